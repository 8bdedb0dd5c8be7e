-- What the optimizer writes: the forecasts a recommendation was made from, and the
-- recommendations themselves, grouped by run so that every run can be read back whole.
--
-- Idempotent, like every numbered file: `mlco db init` and each load apply it again.
-- No foreign keys to entities or metrics: forecasts may come from a trace file whose
-- entities were never loaded, and monitoring joins them to metrics only where both exist.

CREATE TABLE IF NOT EXISTS optimizer_runs (
    run_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    model      text        NOT NULL,
    source     text        NOT NULL,
    params     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- One row per (entity, origin, horizon): cpu_util forecast for target_ts = origin_ts + horizon x 5 min.
CREATE TABLE IF NOT EXISTS forecasts (
    run_id    bigint           NOT NULL REFERENCES optimizer_runs (run_id) ON DELETE CASCADE,
    entity_id text COLLATE "C" NOT NULL,
    origin_ts timestamptz      NOT NULL,
    horizon   integer          NOT NULL CHECK (horizon > 0),
    target_ts timestamptz      NOT NULL CHECK (target_ts > origin_ts),
    p50       double precision NOT NULL CHECK (p50 > '-infinity' AND p50 < 'infinity'),
    p90       double precision CHECK (p90 > '-infinity' AND p90 < 'infinity'),
    PRIMARY KEY (run_id, entity_id, origin_ts, horizon)
);

-- Monitoring joins forecasts to what happened, by (entity, target time).
CREATE INDEX IF NOT EXISTS forecasts_entity_target ON forecasts (entity_id, target_ts);

-- One row per (entity, hour): the vCPU request that keeps utilisation at the run's target, the
-- memory request (never below the recent peak working set), and their hourly cost, CPU and
-- memory priced apart (hourly_cost = cpu_hourly_cost + mem_hourly_cost). A resource the run did
-- not recommend stays at its current amount; its forecast columns are then NULL.
CREATE TABLE IF NOT EXISTS recommendations (
    run_id              bigint           NOT NULL REFERENCES optimizer_runs (run_id) ON DELETE CASCADE,
    entity_id           text COLLATE "C" NOT NULL,
    hour                timestamptz      NOT NULL
        CHECK (date_bin('1 hour', hour, timestamptz '2000-01-01 00:00+00') = hour),
    p50_cores           double precision CHECK (p50_cores >= 0 AND p50_cores < 'infinity'),
    p90_cores           double precision CHECK (p90_cores >= p50_cores AND p90_cores < 'infinity'),
    headroom_cores      double precision CHECK (headroom_cores >= 0 AND headroom_cores < 'infinity'),
    request_cores       double precision NOT NULL CHECK (request_cores > 0 AND request_cores < 'infinity'),
    replicas            integer          NOT NULL CHECK (replicas >= 1),
    current_cores       double precision NOT NULL CHECK (current_cores > 0 AND current_cores < 'infinity'),
    p90_mem_gib         double precision CHECK (p90_mem_gib >= 0 AND p90_mem_gib < 'infinity'),
    peak_mem_gib        double precision CHECK (peak_mem_gib >= 0 AND peak_mem_gib < 'infinity'),
    request_mem_gib     double precision CHECK (request_mem_gib > 0 AND request_mem_gib < 'infinity'),
    current_mem_gib     double precision CHECK (current_mem_gib > 0 AND current_mem_gib < 'infinity'),
    cpu_hourly_cost     double precision CHECK (cpu_hourly_cost >= 0 AND cpu_hourly_cost < 'infinity'),
    mem_hourly_cost     double precision CHECK (mem_hourly_cost >= 0 AND mem_hourly_cost < 'infinity'),
    hourly_cost         double precision NOT NULL CHECK (hourly_cost >= 0 AND hourly_cost < 'infinity'),
    current_hourly_cost double precision NOT NULL CHECK (current_hourly_cost >= 0 AND current_hourly_cost < 'infinity'),
    hourly_saving       double precision NOT NULL CHECK (hourly_saving > '-infinity' AND hourly_saving < 'infinity'),
    PRIMARY KEY (run_id, entity_id, hour)
);

-- A warehouse made before memory was recommended: add its columns (NULL in the rows already
-- stored, which priced an instance as a whole), and let a memory-only run leave CPU's forecast empty.
ALTER TABLE recommendations
    ADD COLUMN IF NOT EXISTS p90_mem_gib     double precision CHECK (p90_mem_gib >= 0 AND p90_mem_gib < 'infinity'),
    ADD COLUMN IF NOT EXISTS peak_mem_gib    double precision CHECK (peak_mem_gib >= 0 AND peak_mem_gib < 'infinity'),
    ADD COLUMN IF NOT EXISTS request_mem_gib double precision CHECK (request_mem_gib > 0 AND request_mem_gib < 'infinity'),
    ADD COLUMN IF NOT EXISTS current_mem_gib double precision CHECK (current_mem_gib > 0 AND current_mem_gib < 'infinity'),
    ADD COLUMN IF NOT EXISTS cpu_hourly_cost double precision CHECK (cpu_hourly_cost >= 0 AND cpu_hourly_cost < 'infinity'),
    ADD COLUMN IF NOT EXISTS mem_hourly_cost double precision CHECK (mem_hourly_cost >= 0 AND mem_hourly_cost < 'infinity'),
    ALTER COLUMN p50_cores DROP NOT NULL,
    ALTER COLUMN p90_cores DROP NOT NULL,
    ALTER COLUMN headroom_cores DROP NOT NULL;

-- Forecast against actual wherever the warehouse holds the target slot: what monitoring reads.
CREATE OR REPLACE VIEW forecast_errors AS
SELECT f.run_id,
       f.entity_id,
       f.origin_ts,
       f.horizon,
       f.target_ts,
       f.p50,
       f.p90,
       m.cpu_util                     AS actual,
       m.cpu_util - f.p50             AS error,
       (m.cpu_util <= f.p90)          AS covered
FROM forecasts AS f
JOIN metrics AS m ON m.entity_id = f.entity_id AND m.ts = f.target_ts;
