-- Hourly aggregates per entity, the frame feature engineering reads (warehouse.read_hourly).
-- Refreshed inside every load's transaction, so it always matches the committed metrics.
-- Hours are UTC; a mean ignores missing (NULL) samples, n_samples counts the slots present.

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_hourly AS
SELECT entity_id,
       date_bin('1 hour', ts, timestamptz '2000-01-01 00:00+00') AS hour,
       count(*)                                                  AS n_samples,
       avg(cpu_util)                                             AS cpu_mean,
       max(cpu_util)                                             AS cpu_max,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY cpu_util)    AS cpu_p95,
       avg(mem_util)                                             AS mem_mean,
       max(mem_util)                                             AS mem_max,
       avg(net_in_kbps)                                          AS net_in_kbps,
       avg(net_out_kbps)                                         AS net_out_kbps,
       avg(disk_read_kbps)                                       AS disk_read_kbps,
       avg(disk_write_kbps)                                      AS disk_write_kbps,
       avg(request_rate)                                         AS request_rate,
       count(*) FILTER (WHERE is_peak)                           AS peak_samples
FROM metrics
GROUP BY entity_id, hour;

CREATE UNIQUE INDEX IF NOT EXISTS metrics_hourly_entity_hour ON metrics_hourly (entity_id, hour);
