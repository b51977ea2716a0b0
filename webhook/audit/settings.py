"""The `journal:` and `audit:` sections of mlgate.yaml (embedded by `webhook.config`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from webhook import schema

DEFAULT_DATA_DIR = ".mlgate"
JOURNAL_FILE = "journal.db"


class JournalSettings(schema.Model):
    """Where decisions are recorded, for how long, and how the writer batches them."""

    url: str | None = None  # sqlite:///path.db or postgresql://...; None: <data dir>/journal.db
    retention: schema.Duration = 30 * 86400.0  # rows older than this are deleted
    maxRows: int = Field(1_000_000, gt=0)  # and only the newest maxRows decisions are kept
    flushInterval: schema.Duration = 0.2  # a crash loses at most this much
    queueSize: int = Field(10_000, gt=0)  # beyond this, decisions are dropped and counted
    batchSize: int = Field(500, gt=0)

    def resolved_url(self, data_dir: str | Path | None) -> str:
        if self.url:
            return self.url
        directory = Path(data_dir or DEFAULT_DATA_DIR)
        return f"sqlite:///{(directory / JOURNAL_FILE).resolve()}"


class Readers(schema.Model):
    """Who may read the audit endpoints when tokens come from the static token file."""

    users: list[str] = []
    groups: list[str] = ["mlgate:audit-readers"]


class ScanSettings(schema.Model):
    """The background scan of the cluster (off by default)."""

    enabled: bool = False
    interval: schema.Duration = 600.0
    pageSize: int = Field(250, gt=0, le=5000)  # `limit` of each list request
    kubeconfig: str | None = None  # None: in-cluster config, else ~/.kube/config
    timeout: schema.Duration = 30.0  # per API request


class AuditSettings(schema.Model):
    """Access to the audit endpoints, and the cluster scan."""

    tokenFile: str | None = None  # Kubernetes static token CSV: token,user,uid,"g1,g2"
    readers: Readers = Readers()
    kubernetesAuth: bool | None = None  # TokenReview + SubjectAccessReview; None: in cluster
    metricsPublic: bool = True  # Prometheus scrapes /metrics without a token
    scan: ScanSettings = ScanSettings()
