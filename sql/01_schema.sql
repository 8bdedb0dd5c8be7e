-- The warehouse: two dimension tables and a metrics fact table range-partitioned by week.
--
-- Idempotent: every statement may run again on a warehouse that already holds it, so
-- `mlco db init` and every load apply this file without a migration step.
-- Keys are COLLATE "C": byte order, the order pandas sorts strings in, and cheaper to compare.

-- The catalogue: what an instance type offers and costs per hour in each region. Loads fill
-- it from their entities (the median when a trace's VMs of one type differ a little).
CREATE TABLE IF NOT EXISTS instance_types (
    instance_type text COLLATE "C" NOT NULL,
    region        text COLLATE "C" NOT NULL,
    vcpus         double precision NOT NULL CHECK (vcpus > 0 AND vcpus < 'infinity'),
    mem_gib       double precision NOT NULL CHECK (mem_gib > 0 AND mem_gib < 'infinity'),
    hourly_price  double precision NOT NULL CHECK (hourly_price >= 0 AND hourly_price < 'infinity'),
    PRIMARY KEY (instance_type, region)
);

-- Each entity keeps its own size and price: real traces report them per VM, and two VMs
-- of one nominal type may differ (Bitbrains names types by rounded memory sizes).
CREATE TABLE IF NOT EXISTS entities (
    entity_id     text COLLATE "C" PRIMARY KEY,
    service       text NOT NULL,
    region        text COLLATE "C" NOT NULL,
    instance_type text COLLATE "C" NOT NULL,
    vcpus         double precision NOT NULL CHECK (vcpus > 0 AND vcpus < 'infinity'),
    mem_gib       double precision NOT NULL CHECK (mem_gib > 0 AND mem_gib < 'infinity'),
    hourly_price  double precision NOT NULL CHECK (hourly_price >= 0 AND hourly_price < 'infinity'),
    FOREIGN KEY (instance_type, region) REFERENCES instance_types (instance_type, region)
);

-- A warehouse made when vCPUs were whole numbers: make them fractional (a 250m request is 0.25).
DO $$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'entities' AND column_name = 'vcpus') = 'integer' THEN
        ALTER TABLE instance_types ALTER COLUMN vcpus TYPE double precision;
        ALTER TABLE entities ALTER COLUMN vcpus TYPE double precision;
    END IF;
END $$;

-- One row per (entity, 5-minute slot). Utilisation is a fraction of what is provisioned.
-- `x < 'infinity'` also refuses NaN, which PostgreSQL orders above every number.
-- No foreign key to entities: its per-row check made a 300k-row load 2.5 times slower, and the
-- loader writes entities and metrics in one transaction after checking every row has one.
-- The primary key is the B-tree on (entity_id, ts) that per-entity reads and upserts use.
CREATE TABLE IF NOT EXISTS metrics (
    entity_id       text COLLATE "C" NOT NULL,
    ts              timestamptz      NOT NULL,
    cpu_util        double precision NOT NULL CHECK (cpu_util BETWEEN 0 AND 1.5),
    mem_util        double precision CHECK (mem_util BETWEEN 0 AND 1.5),
    net_in_kbps     double precision CHECK (net_in_kbps >= 0 AND net_in_kbps < 'infinity'),
    net_out_kbps    double precision CHECK (net_out_kbps >= 0 AND net_out_kbps < 'infinity'),
    disk_read_kbps  double precision CHECK (disk_read_kbps >= 0 AND disk_read_kbps < 'infinity'),
    disk_write_kbps double precision CHECK (disk_write_kbps >= 0 AND disk_write_kbps < 'infinity'),
    request_rate    double precision CHECK (request_rate >= 0 AND request_rate < 'infinity'),
    is_peak         boolean,
    CONSTRAINT metrics_ts_on_grid CHECK (date_bin('5 minutes', ts, timestamptz '2000-01-01 00:00+00') = ts),
    PRIMARY KEY (entity_id, ts)
) PARTITION BY RANGE (ts);

-- Loads arrive in time order (each brings the newest days), so block ranges within a partition
-- follow time: a BRIN index on ts stays a few pages and lets range scans skip the rest.
CREATE INDEX IF NOT EXISTS metrics_ts_brin ON metrics USING brin (ts);

-- Weekly partitions, Monday 00:00 UTC to the next Monday, named metrics_YYYYMMDD after their
-- first day. Deliberately no DEFAULT partition: it would have to be scanned by every query
-- and blocks creating a partition whose range it already holds rows for.
CREATE OR REPLACE FUNCTION ensure_metric_partitions(range_start timestamptz, range_end timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    week_start timestamptz := date_trunc('week', range_start, 'UTC');
    partition_name text;
    created integer := 0;
BEGIN
    IF range_start IS NULL OR range_end IS NULL OR range_end <= range_start THEN
        RETURN 0;
    END IF;
    WHILE week_start < range_end LOOP
        partition_name := 'metrics_' || to_char(week_start AT TIME ZONE 'UTC', 'YYYYMMDD');
        IF to_regclass(quote_ident(partition_name)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF metrics FOR VALUES FROM (%L) TO (%L)',
                partition_name, week_start, week_start + interval '168 hours');
            created := created + 1;
        END IF;
        week_start := week_start + interval '168 hours';
    END LOOP;
    RETURN created;
END
$$;

COMMENT ON FUNCTION ensure_metric_partitions(timestamptz, timestamptz) IS
    'Create the missing weekly partitions of metrics covering [range_start, range_end); returns how many it created.';

-- One row per committed load, for `mlco db status` and for auditing what came from where.
CREATE TABLE IF NOT EXISTS load_log (
    load_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loaded_at timestamptz      NOT NULL DEFAULT now(),
    source    text             NOT NULL,
    rows_in   bigint           NOT NULL CHECK (rows_in >= 0),
    inserted  bigint           NOT NULL CHECK (inserted >= 0),
    updated   bigint           NOT NULL CHECK (updated >= 0),
    first_ts  timestamptz,
    last_ts   timestamptz,
    seconds   double precision NOT NULL
);
