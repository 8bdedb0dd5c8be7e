-- Named OLAP queries over the warehouse, run by `mlco db query NAME` (list them with --list).
--
-- Each query starts with `-- name:` and `-- doc:` lines, then one `-- param: NAME = DEFAULT -- what`
-- line per named parameter it uses as %(NAME)s (an empty DEFAULT is the empty string). Values
-- arrive as text and are cast in SQL, so `--param start=2013-08-05` works as written.
-- Times are UTC; a range is [start, end), start included.
-- Costs are each entity's hourly price for the 5-minute slots it reported (hourly_price / 12 each).
-- This file holds queries only; warehouse.schema does not run it as DDL.

-- name: hourly_rollup
-- doc: Hourly load and cost per service, per region, per instance type and fleet-wide (GROUPING SETS).
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
-- Rows are first summed per (hour, entity): the grouping sets then work on 12 times fewer
-- rows, and counting them counts distinct entities without a sort.
WITH per_entity AS (
    SELECT date_bin('1 hour', ts, timestamptz '2000-01-01 00:00+00') AS hour,
           entity_id,
           count(*)            AS samples,
           sum(cpu_util)       AS cpu_sum,
           max(cpu_util)       AS cpu_max,
           sum(mem_util)       AS mem_sum,
           count(mem_util)     AS mem_samples,
           sum(request_rate)   AS requests_sum
    FROM metrics
    WHERE ts >= %(start)s::timestamptz AND ts < %(end)s::timestamptz
    GROUP BY hour, entity_id
)
SELECT p.hour,
       CASE WHEN GROUPING(e.service) = 0 THEN 'service'
            WHEN GROUPING(e.region) = 0 THEN 'region'
            WHEN GROUPING(e.instance_type) = 0 THEN 'instance_type'
            ELSE 'fleet' END                                  AS grouped_by,
       e.service, e.region, e.instance_type,
       count(*)                                              AS entities,
       sum(p.samples)::bigint                                AS samples,
       sum(p.cpu_sum) / sum(p.samples)::float8               AS cpu_mean,
       max(p.cpu_max)                                        AS cpu_max,
       sum(p.mem_sum) / nullif(sum(p.mem_samples), 0)::float8 AS mem_mean,
       sum(p.requests_sum) / 12                              AS requests_per_s,
       sum(e.hourly_price * p.samples) / 12                  AS cost_usd
FROM per_entity p
JOIN entities e USING (entity_id)
GROUP BY p.hour, GROUPING SETS ((e.service), (e.region), (e.instance_type), ())
ORDER BY p.hour, grouped_by, e.service, e.region, e.instance_type;

-- name: daily_rollup
-- doc: Daily load and cost over service > region > instance type with subtotals (ROLLUP); NULL means all.
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
SELECT date_bin('1 day', m.ts, timestamptz '2000-01-01 00:00+00') AS day,
       e.service, e.region, e.instance_type,
       GROUPING(e.service, e.region, e.instance_type) AS rollup_level,
       count(DISTINCT m.entity_id)                                AS entities,
       count(*)                                                   AS samples,
       avg(m.cpu_util)                                            AS cpu_mean,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY m.cpu_util)   AS cpu_p95,
       avg(m.mem_util)                                            AS mem_mean,
       sum(e.hourly_price) / 12                                   AS cost_usd
FROM metrics m
JOIN entities e USING (entity_id)
WHERE m.ts >= %(start)s::timestamptz AND m.ts < %(end)s::timestamptz
GROUP BY day, ROLLUP (e.service, e.region, e.instance_type)
ORDER BY day, e.service NULLS LAST, e.region NULLS LAST, e.instance_type NULLS LAST;

-- name: entity_daily_percentiles
-- doc: CPU and memory p50/p95/p99 (continuous percentiles) per entity per UTC day.
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
-- param: entity = -- only this entity (empty: all)
SELECT entity_id, day, samples,
       cpu[1] AS cpu_p50, cpu[2] AS cpu_p95, cpu[3] AS cpu_p99,
       mem[1] AS mem_p50, mem[2] AS mem_p95, mem[3] AS mem_p99
FROM (
    SELECT entity_id,
           date_bin('1 day', ts, timestamptz '2000-01-01 00:00+00')                    AS day,
           count(*)                                                                     AS samples,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY cpu_util)     AS cpu,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY mem_util)     AS mem
    FROM metrics
    WHERE ts >= %(start)s::timestamptz AND ts < %(end)s::timestamptz
      AND (%(entity)s = '' OR entity_id = %(entity)s)
    GROUP BY entity_id, day
) daily
ORDER BY entity_id, day;

-- name: zscore_peaks
-- doc: CPU samples at least z standard deviations above their entity's trailing moving average.
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
-- param: window = 1 hour -- trailing window before each sample, the sample itself excluded (interval)
-- param: z = 3 -- z-score threshold (float)
-- param: min_samples = 6 -- fewest samples in the window for a score (integer)
-- param: entity = -- only this entity (empty: all)
WITH scored AS (
    SELECT entity_id, ts, cpu_util,
           avg(cpu_util)         OVER history AS moving_avg,
           stddev_samp(cpu_util) OVER history AS moving_std,
           count(*)              OVER history AS window_samples
    FROM metrics
    WHERE ts >= %(start)s::timestamptz - %(window)s::interval AND ts < %(end)s::timestamptz
      AND (%(entity)s = '' OR entity_id = %(entity)s)
    WINDOW history AS (PARTITION BY entity_id ORDER BY ts
                        RANGE BETWEEN %(window)s::interval PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)
)
SELECT entity_id, ts, cpu_util, moving_avg, moving_std, window_samples,
       (cpu_util - moving_avg) / moving_std AS z
FROM scored
WHERE ts >= %(start)s::timestamptz
  AND window_samples >= %(min_samples)s::integer
  AND moving_std > 0
  AND (cpu_util - moving_avg) / moving_std >= %(z)s::float8
ORDER BY entity_id, ts;

-- name: cost_by_service_region
-- doc: Spend per service and region with subtotals, and the part of it paid for idle CPU.
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
WITH per_entity AS (
    SELECT entity_id,
           count(*)                         AS samples,
           sum(cpu_util)                    AS cpu_sum,
           sum(1 - least(cpu_util, 1.0))    AS idle_samples
    FROM metrics
    WHERE ts >= %(start)s::timestamptz AND ts < %(end)s::timestamptz
    GROUP BY entity_id
)
SELECT e.service, e.region,
       count(*)                                       AS entities,
       sum(p.samples) / 12.0::float8                  AS instance_hours,
       sum(e.hourly_price * p.samples) / 12           AS cost_usd,
       sum(p.cpu_sum) / sum(p.samples)::float8        AS cpu_mean,
       sum(e.hourly_price * p.idle_samples) / 12      AS idle_cost_usd
FROM per_entity p
JOIN entities e USING (entity_id)
GROUP BY ROLLUP (e.service, e.region)
ORDER BY e.service NULLS LAST, e.region NULLS LAST;

-- name: rightsizing
-- doc: Idle entities (stop or consolidate) and over-provisioned ones (smallest size that fits), with monthly savings.
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
-- param: quantile = 0.95 -- usage quantile to size for (float)
-- param: target_util = 0.7 -- utilisation the resized instance should run at, at that quantile (float)
-- param: idle_cpu = 0.05 -- an entity whose CPU quantile is below this is idle (float)
-- param: hours_per_month = 730 -- hours a saving is counted over (float)
-- Sizes step as in a cloud instance family: each step down halves vCPUs, memory and price,
-- and keeps whole vCPUs. An idle entity saves its whole price.
WITH usage AS (
    SELECT entity_id,
           percentile_cont(%(quantile)s::float8) WITHIN GROUP (ORDER BY cpu_util) AS cpu_q,
           percentile_cont(%(quantile)s::float8) WITHIN GROUP (ORDER BY mem_util) AS mem_q
    FROM metrics
    WHERE ts >= %(start)s::timestamptz AND ts < %(end)s::timestamptz
    GROUP BY entity_id
), needs AS (
    SELECT e.entity_id, e.service, e.region, e.instance_type, e.vcpus, e.mem_gib, e.hourly_price,
           u.cpu_q, u.mem_q,
           greatest(1, u.cpu_q * e.vcpus / %(target_util)s::float8)       AS vcpus_needed,
           -- no memory readings: CPU alone decides
           coalesce(u.mem_q * e.mem_gib / %(target_util)s::float8, 0)     AS mem_gib_needed
    FROM usage u
    JOIN entities e USING (entity_id)
), sized AS (
    SELECT n.*,
           CASE WHEN n.cpu_q < %(idle_cpu)s::float8 THEN 'idle' ELSE 'over-provisioned' END AS finding,
           step.k
    FROM needs n
    LEFT JOIN LATERAL (
        SELECT k
        FROM generate_series(1, 10) AS k
        WHERE n.vcpus = trunc(n.vcpus) AND n.vcpus::bigint %% (1 << k) = 0  -- fractional cores: no family step
          AND n.vcpus / (1 << k) >= n.vcpus_needed
          AND n.mem_gib / (1 << k) >= n.mem_gib_needed
        ORDER BY k DESC
        LIMIT 1
    ) step ON true
)
SELECT entity_id, service, region, instance_type, vcpus, mem_gib, cpu_q, mem_q, finding,
       CASE WHEN finding = 'idle' THEN 0 ELSE vcpus / (1 << k) END               AS recommended_vcpus,
       CASE WHEN finding = 'idle' THEN 0 ELSE mem_gib / (1 << k) END             AS recommended_mem_gib,
       hourly_price * CASE WHEN finding = 'idle' THEN 1 ELSE 1 - 1.0::float8 / (1 << k) END
           * %(hours_per_month)s::float8                                         AS monthly_saving_usd
FROM sized
WHERE finding = 'idle' OR k IS NOT NULL
ORDER BY monthly_saving_usd DESC, entity_id;

-- name: load_heatmap
-- doc: Mean CPU by hour of day (rows) and ISO day of week (columns), UTC.
-- param: start = -infinity -- first instant included (timestamptz)
-- param: end = infinity -- first instant excluded (timestamptz)
SELECT extract(hour FROM ts AT TIME ZONE 'UTC')::integer                        AS hour_utc,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 1) AS mon,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 2) AS tue,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 3) AS wed,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 4) AS thu,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 5) AS fri,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 6) AS sat,
       avg(cpu_util) FILTER (WHERE extract(isodow FROM ts AT TIME ZONE 'UTC') = 7) AS sun,
       avg(cpu_util)                                                               AS all_days
FROM metrics
WHERE ts >= %(start)s::timestamptz AND ts < %(end)s::timestamptz
GROUP BY hour_utc
ORDER BY hour_utc;
