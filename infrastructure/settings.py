"""One typed settings object, read from MARKETLOG_* environment variables at start-up."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_PASSWORDS = frozenset({"changeme", "changethis", "password", "secret", "postgres"})


class StrategySpec(BaseModel):
    """A strategy ``marketlog serve`` can run against the simulated venue (paper trading)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
    kind: Literal["market_maker", "pairs"]
    user: str = "strategy"  # the configured user it acts as (entitled to ``account``)
    account: str = "ACC-ALPHA"
    params: dict[str, Any] = Field(default_factory=dict)  # the strategy's config fields
    start: bool = False  # started with the server; otherwise by POST /strategies/{id}/start


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETLOG_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the embedded default keeps its files.")
    database_url: str | None = Field(
        None,
        description="Event store. postgresql://user:password@host:port/dbname for PostgreSQL; "
        "unset = SQLite file <data_dir>/events.sqlite.",
    )
    database_owner_url: str | None = Field(
        None,
        description="PostgreSQL URL of the role that OWNS the event store's tables (ARCHITECTURE "
        "rule 11). Used only to create/upgrade the store's schema and grant the engine and "
        "reader roles their privileges: by `marketlog db init`, and by the engine at start "
        "when set. The engine itself (database_url) must not own the tables.",
    )
    reader_database_url: str | None = Field(
        None,
        description="PostgreSQL URL of a SELECT-only role on the event store, used by read-only "
        "tools (`marketlog verify`); unset = database_url.",
    )
    chain_anchor_file: Path | None = Field(
        None,
        description="Append-only JSON-lines file where every committed chain head (position, "
        "hash, time) is recorded outside the database; `verify` checks the chain against it. "
        "Unset = <data_dir>/chain-heads.jsonl.",
    )
    writer_lock_check_seconds: float = Field(
        1.0, gt=0, description="How often the engine checks that it still holds its writer "
        "lock (PostgreSQL advisory lock, SQLite lock file).")
    read_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the read models; unset = the store's PostgreSQL database, "
        "or SQLite file <data_dir>/read_models.sqlite on the embedded default.",
    )
    config_file: Path | None = Field(
        None, description="TOML with firm limits, instruments and accounts; unset = built-in."
    )
    batch_max: int = Field(2000, gt=0, description="Most commands decided per group commit.")
    projection_batch: int = Field(
        5000, gt=0, description="Most events applied per read-model transaction.")
    liquidity_provider: bool = Field(
        False, description="Run the venue's synthetic liquidity provider.")
    liquidity_seed: int = Field(7, description="Seed of the synthetic liquidity provider.")
    engine_queue_max: int = Field(
        20_000, gt=0, description="Commands the engine queues before answering 503 (busy).")
    snapshot_every: int = Field(
        200_000, gt=0,
        description="Events between snapshots of the book of record (taken when idle and "
        "after each trading-day close); a restart replays only the log after the latest.")
    clock_tolerance_ms: int = Field(
        50, gt=0, le=50,
        description="How far the system clock may be found behind the engine's last stamp "
        "before the engine records a clock exception (ClockExceptionRecorded); at most CAT's "
        "50 ms.")
    time_reference: str = Field(
        "", pattern=r"^([A-Za-z0-9.\-]+(:[0-9]{1,5})?)?$",
        description="host[:port] of an SNTP time reference (e.g. time.nist.gov; port 123 when "
        "omitted). Set: `marketlog serve` checks the system clock's offset from it every "
        "time_check_seconds and the engine records (ClockExceptionRecorded, where "
        "\"reference\") the first check of each start and trading day, each drift beyond "
        "clock_tolerance_ms and its end, and each time the reference stops answering; unset "
        "(default) = drift against NIST time is not measured.")
    time_check_seconds: float = Field(
        60.0, gt=0, le=3600, description="How often the time reference is checked.")
    max_body_bytes: int = Field(
        64 * 1024, gt=0,
        description="Largest HTTP request body the API reads (413 beyond it). An order is "
        "~250 bytes; the cap keeps one client from making the server buffer and echo megabytes.")
    kafka_bootstrap: str | None = Field(
        None,
        description="host:port[,host:port] of the Kafka brokers. Set: the relay publishes every "
        "event to Kafka and the projections are fed from it; unset = the embedded default "
        "(projections follow the store's notification log in-process).")
    kafka_topic_prefix: str = Field(
        "marketlog", pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Topics are <prefix>.events and <prefix>.checkpoints.")
    kafka_partitions: int = Field(
        8, gt=0, le=10_000,
        description="Partitions of the events topic when the relay creates it (keyed by "
        "account; never changed afterwards: an account's partition would move).")
    kafka_replication: int = Field(
        1, gt=0, le=16, description="Replication factor of the topics the relay creates.")
    kafka_consumer_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Consumer group of the projector; unset = <prefix>.projections (one group "
        "per event log: a group shared by projectors of different logs would rebalance them "
        "all whenever one starts or stops). Its offsets live in the read-model database.")
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka client of the relay and the projector: kafka-python (pure Python, "
        "the product's named client; ~35k records/s per core) or confluent (librdkafka, for "
        "production volumes). Same records, same partitions.")
    kafka_relay: bool = Field(
        True, description="With kafka_bootstrap set, `marketlog serve` runs the relay in "
        "process; false when a separate `marketlog relay` publishes.")
    strategies: list[StrategySpec] = Field(
        default_factory=list,
        description="Strategies of the paper-trading desk (JSON list of {id, kind, user, "
        "account, params, start}); none by default. Listed by GET /strategies, started with "
        "the server when start is true, else by POST /strategies/{id}/start.")
    strategy_poll_seconds: float = Field(
        0.05, gt=0, description="How often a running strategy polls quotes and its events.")
    market_data_file: Path | None = Field(
        None, description="A recorded market-data file (tick CSV, or ITCH 5.0 with "
        "market_data_itch_date) that `marketlog serve` plays as a live feed: reference prices "
        "from its NBBO, quotes to the strategies (paper trading).")
    market_data_itch_date: date | None = Field(
        None, description="The session date of an ITCH 5.0 market_data_file.")
    market_data_speed: float = Field(
        1.0, gt=0, le=1_000_000, description="Replay speed of market_data_file (1: as recorded).")
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("database_url", "database_owner_url", "reader_database_url")
    @classmethod
    def _no_placeholder_secrets(cls, url: str | None) -> str | None:
        if url:
            if not url.startswith(("postgresql://", "postgres://")):
                raise ValueError("must be a postgresql:// URL (leave unset for the SQLite default)")
            password = urlsplit(url).password
            if password and password.lower() in PLACEHOLDER_PASSWORDS:
                raise ValueError("refusing a placeholder password; set a real one")
        return url

    @property
    def kafka_group(self) -> str:
        return self.kafka_consumer_group or f"{self.kafka_topic_prefix}.projections"

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url)

    @property
    def anchor_file(self) -> Path:
        return self.chain_anchor_file or self.data_dir / "chain-heads.jsonl"

    @property
    def sqlite_store_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def read_models_url(self) -> str:
        if self.read_database_url:
            return self.read_database_url
        if self.database_url:
            return "postgresql+psycopg://" + self.database_url.split("://", 1)[1]
        return f"sqlite:///{(self.data_dir / 'read_models.sqlite').as_posix()}"
