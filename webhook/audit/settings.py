"""The `journal:` and `audit:` sections of mlgate.yaml (embedded by `webhook.config`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from webhook import schema

DEFAULT_DATA_DIR = ".mlgate"
JOURNAL_FILE = "journal.db"
SPILL_DIR = "journal-spill"  # the journal's local buffer, beside journal.db in the data dir


class JournalSettings(schema.Model):
    """Where decisions are recorded, for how long, and how the writer batches them."""

    url: str | None = None  # sqlite:///path.db or postgresql://...; None: <data dir>/journal.db
    retention: schema.Duration = 30 * 86400.0  # rows older than this are deleted
    maxRows: int = Field(1_000_000, gt=0)  # and only the newest maxRows decisions are kept
    flushInterval: schema.Duration = 0.2  # a crash loses at most this much
    queueSize: int = Field(10_000, gt=0)  # in memory, for the writer; beyond it: the buffer
    batchSize: int = Field(500, gt=0)
    # The local buffer (<data dir>/journal-spill/) that holds decisions while the database is
    # down, full or slow; past it decisions are dropped and counted. 0: no buffer.
    spillBytes: int = Field(256 * 1024 * 1024, ge=0)

    def resolved_url(self, data_dir: str | Path | None) -> str:
        if self.url:
            return self.url
        directory = Path(data_dir or DEFAULT_DATA_DIR)
        return f"sqlite:///{(directory / JOURNAL_FILE).resolve()}"

    def spill_dir(self, data_dir: str | Path | None) -> Path | None:
        """Where the local buffer lives (None when `spillBytes` is 0)."""
        if not self.spillBytes:
            return None
        return (Path(data_dir or DEFAULT_DATA_DIR) / SPILL_DIR).resolve()


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


class PolicyReportSettings(schema.Model):
    """wgpolicyk8s.io/v1alpha2 PolicyReports written by the scan (off by default)."""

    enabled: bool = False
    maxResults: int = Field(1000, gt=0)  # per report; the summary still counts every result


class EventSettings(schema.Model):
    """Kubernetes Events for denials and scan findings, off the admission path."""

    enabled: bool = True  # needs a client: in a pod, or audit.scan.kubeconfig
    denials: bool = True  # AdmissionDenied, on the namespace of the denied object
    scanFindings: bool = True  # PolicyViolation, on the object the scan found
    queueSize: int = Field(1000, gt=0)  # beyond this, events are dropped and counted
    burst: int = Field(25, gt=0)  # new events per namespace at once...
    perMinute: float = Field(6.0, gt=0)  # ...then this many per namespace and minute
    dedupWindow: schema.Duration = 3600.0  # a repeat within this raises the series count


class AuditSettings(schema.Model):
    """Access to the audit endpoints, and the cluster scan."""

    tokenFile: str | None = None  # Kubernetes static token CSV: token,user,uid,"g1,g2"
    readers: Readers = Readers()
    kubernetesAuth: bool | None = None  # TokenReview + SubjectAccessReview; None: in cluster
    metricsPublic: bool = True  # Prometheus scrapes /metrics without a token
    scan: ScanSettings = ScanSettings()
    policyReports: PolicyReportSettings = PolicyReportSettings()
    events: EventSettings = EventSettings()
    # Report and decision queries run in a pool of their own of this many threads (read at
    # start); a reader past it gets a 503 at once instead of waiting behind a slow journal.
    maxQueries: int = Field(4, gt=0, le=64)
    queryTimeout: schema.Duration = 30.0  # a query still running then is a 503 (read at start)

    @model_validator(mode="after")
    def _reports_need_the_scan(self) -> AuditSettings:
        if self.policyReports.enabled and not self.scan.enabled:
            raise ValueError("audit.policyReports.enabled needs audit.scan.enabled: the "
                             "reports carry the scan's results")
        return self
