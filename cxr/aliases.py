"""The registry's alias names: the one place they are spelled.

The pipeline registers a version that passes the gate as @challenger (`register.alias`); a release
manager moves @champion to it (`cxr registry promote`), and the version it replaces becomes
@previous-champion (what `cxr registry rollback` restores). Only the release aliases are protected by
the tracking server's permissions (cxr/mlflow_auth).
"""

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
RELEASE_ALIASES = (CHAMPION, PREVIOUS_CHAMPION)
