"""Release management with real identities on the MLflow server.

`app.py` is an MLflow server app (`mlflow server --app-name cxr-auth`): MLflow's basic-auth app plus
one rule MLflow cannot express, since moving an alias and registering a version both need only EDIT
on a registered model: the release aliases (@champion, @previous-champion) move only for users with
MANAGE on the model (release managers) or admins. `roles.py` gives users their roles.

`__all__` names the modules other packages import.
"""

from cxr.aliases import RELEASE_ALIASES

PROTECTED_ALIASES = RELEASE_ALIASES

__all__ = ["app", "roles", "subscription"]
