"""What the web app keeps about each prediction it answered and what radiologists found: numbers and the site.

One row per answered or refused upload: its id, time, the model version, the outcome (the label, or
refused), the probability, the input gate's and the scope check's scores, the drift projection of the
image's features (at most 32 numbers, cxr/safety/drift.py), the site the film came from (its DICOM
InstitutionName, else the site the app is configured for); and, once a radiologist records it, the
finding (covid, not_covid, unsure), who recorded it and when. Never pixels, file names or patient fields.
Beside them, each per-site drift check `cxr monitor drift --records --site` made: a site is validated for
a model version once its newest check there found no drift.

The predictions table is bounded: rows older than `max_age_days` and beyond the newest `max_rows`
are deleted as new ones arrive. A SQLAlchemy URL names the store: a SQLite file for one process, the
team's PostgreSQL when replicas share it (`serve.records_url`).
"""

from __future__ import annotations

import datetime
import re
import uuid
from pathlib import Path

import sqlalchemy as sa

from cxr.errors import CxrError
from cxr.params import project_root

FINDINGS = ("covid", "not_covid", "unsure")
NUMBERS = (
    "created_at",
    "model_version",
    "site",
    "outcome",
    "probability",
    "gate_score",
    "scope_score",
    "projection",
)
PRUNE_EVERY = 100  # inserts between two prunes

_metadata = sa.MetaData()
PREDICTIONS = sa.Table(
    "cxr_predictions",
    _metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_version", sa.String(32), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # the label given, or refused
    sa.Column("positive", sa.Boolean, nullable=True),  # the label is the positive class (None: refused)
    sa.Column("probability", sa.Float, nullable=True),
    sa.Column("gate_score", sa.Float, nullable=True),
    sa.Column("scope_score", sa.Float, nullable=True),
    sa.Column("projection", sa.JSON, nullable=True),  # the drift projection (None: refused unread, or no reference)
    sa.Column("site", sa.String(64), nullable=True, index=True),  # where the film was taken (None: unnamed)
    sa.Column("finding", sa.String(16), nullable=True),
    sa.Column("finding_by", sa.String(128), nullable=True),
    sa.Column("finding_at", sa.DateTime(timezone=True), nullable=True),
)
SITE_CHECKS = sa.Table(
    "cxr_site_checks",
    _metadata,
    sa.Column("check_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),  # '' : films with no site named
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("p_value", sa.Float, nullable=False),
    sa.Column("drift", sa.Boolean, nullable=False),
)


def resolve_records_url(url: str) -> str:
    """serve.records_url as the app uses it: empty -> the SQLite file .serve/records.db in the project; off -> ''."""
    if url.lower() == "off":
        return ""
    return url or f"sqlite:///{project_root() / '.serve' / 'records.db'}"


def existing_records(url: str) -> PredictionRecords | None:
    """The store at `url` when there is one to read: None when `url` is empty (off) or names a SQLite file
    the web app has not written yet."""
    if not url or (url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file()):
        return None
    return PredictionRecords(url)


def since_time(text: str) -> datetime.datetime | None:
    """'24h', '7d', '30m' -> that long ago (UTC); '' -> None."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not match:
        raise CxrError(f"--since '{text}' is not a duration; give e.g. 30m, 24h or 7d.")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(**{unit: int(match.group(1))})


# replicas starting together on one PostgreSQL set the schema up one at a time (a transaction-level
# advisory lock): two concurrent CREATE TABLEs fail in one of them (a duplicate key in pg_type)
SCHEMA_LOCK = 0x63787200  # "cxr\0"


def _set_up_schema(engine) -> None:
    """The records table, created if missing, with the columns added since an older version of the app
    wrote it (nullable: old rows keep None), so upgrading the app keeps every row already recorded."""
    with engine.begin() as db:
        if db.dialect.name == "postgresql":
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        _metadata.create_all(db)
        present = {c["name"] for c in sa.inspect(db).get_columns(PREDICTIONS.name)}
        for column in PREDICTIONS.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                db.execute(sa.text(f"ALTER TABLE {PREDICTIONS.name} ADD COLUMN {column.name} {kind}"))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class UnknownPrediction(CxrError):
    """No record of that prediction id (never made, or pruned): 404."""


class PredictionRecords:
    def __init__(self, url: str, max_rows: int = 100_000, max_age_days: float = 90):
        options = {}
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}  # concurrent requests wait for the file's write lock
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True, **options)
            _set_up_schema(self.engine)
        except Exception as exc:  # noqa: BLE001 (a bad URL, an unreachable server: one sentence at start)
            raise CxrError(
                f"The prediction records store {url.split('@')[-1]} cannot be opened ({exc.__class__.__name__}); "
                "check serve.records_url (or --records-url), or set it to off."
            ) from exc
        self.max_rows, self.max_age = max_rows, datetime.timedelta(days=max_age_days)
        self._inserts = 0

    def add(self, model_version: str, row: dict, positive_class: str, site: str = "") -> str:
        """Record one assessed upload (the row `cxr.inference.scoring` gives) taken at `site` ('' : unnamed);
        returns its prediction id."""
        prediction_id = str(uuid.uuid4())
        label = row.get("label")

        def number(key):
            value = row.get(key)
            return None if value is None else float(value)

        values = {
            "prediction_id": prediction_id,
            "created_at": _now(),
            "model_version": model_version,
            "outcome": label if row.get("probability") is not None else "refused",
            "positive": None if row.get("probability") is None else label == positive_class,
            "probability": number("probability"),
            "gate_score": number("ood_score"),
            "scope_score": number("scope_score"),
            "projection": [float(x) for x in row["projection"]] if row.get("projection") else None,
            "site": site or None,
        }
        with self.engine.begin() as db:
            db.execute(PREDICTIONS.insert().values(**values))
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 1:
            self.prune()
        return prediction_id

    def record_finding(self, prediction_id: str, finding: str, user: str) -> None:
        if finding not in FINDINGS:
            raise CxrError(f"Finding '{finding}' is not one of {', '.join(FINDINGS)}; send one of them.")
        with self.engine.begin() as db:
            done = db.execute(
                PREDICTIONS.update()
                .where(PREDICTIONS.c.prediction_id == prediction_id)
                .values(finding=finding, finding_by=user[:128], finding_at=_now())
            )
        if done.rowcount == 0:
            raise UnknownPrediction(
                f"No prediction {prediction_id} is on record (unknown, or older than the records keep); "
                "record the finding against the id the prediction returned."
            )

    def prune(self) -> int:
        """Delete rows past the age limit and beyond the newest `max_rows`; returns how many went."""
        with self.engine.begin() as db:
            gone = db.execute(PREDICTIONS.delete().where(PREDICTIONS.c.created_at < _now() - self.max_age)).rowcount
            newest = (
                sa.select(PREDICTIONS.c.prediction_id).order_by(PREDICTIONS.c.created_at.desc()).limit(self.max_rows)
            )
            kept = sa.select(newest.subquery().c.prediction_id)
            gone += db.execute(PREDICTIONS.delete().where(PREDICTIONS.c.prediction_id.not_in(kept))).rowcount
        return gone

    def rows(
        self, since: datetime.datetime | None = None, version: str = "", limit: int = 0, site: str | None = None
    ) -> list[dict]:
        """Rows oldest first, from `since`, of `version`, taken at `site` ('' : unnamed; None: any);
        `limit`: the newest that many."""
        query = sa.select(PREDICTIONS).order_by(PREDICTIONS.c.created_at.desc())
        if since is not None:
            query = query.where(PREDICTIONS.c.created_at >= since)
        if version:
            query = query.where(PREDICTIONS.c.model_version == version)
        if site is not None:
            query = query.where(PREDICTIONS.c.site == site if site else PREDICTIONS.c.site.is_(None))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query)][::-1]

    def record_site_check(self, site: str, model_version: str, n: int, p_value: float, drift: bool) -> None:
        """A drift check of the films taken at `site` ('' : unnamed) with `model_version`."""
        values = {"site": site, "model_version": model_version, "checked_at": _now()}
        values |= {"n": int(n), "p_value": float(p_value), "drift": bool(drift)}
        with self.engine.begin() as db:
            db.execute(SITE_CHECKS.insert().values(**values))

    def site_validated(self, site: str, model_version: str) -> bool:
        """Whether the newest drift check of `site`'s films with `model_version` found no drift."""
        query = (
            sa.select(SITE_CHECKS.c.drift)
            .where(SITE_CHECKS.c.site == site, SITE_CHECKS.c.model_version == model_version)
            .order_by(SITE_CHECKS.c.checked_at.desc(), SITE_CHECKS.c.check_id.desc())
            .limit(1)
        )
        with self.engine.connect() as db:
            newest = db.execute(query).scalar_one_or_none()
        return newest is False

    def site_checks(self) -> list[dict]:
        """Every per-site check, oldest first."""
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(sa.select(SITE_CHECKS).order_by(SITE_CHECKS.c.check_id))]
