WITH hours AS (
    SELECT account_id, aws_region, date_trunc('hour', event_time) AS hour, count(*) AS events
    FROM period_events GROUP BY 1, 2, 3
),
gaps AS (
    SELECT account_id, aws_region, hour,
           lag(hour) OVER (PARTITION BY account_id, aws_region ORDER BY hour) AS previous
    FROM hours
),
summary AS (
    SELECT account_id, aws_region, count(*) AS hours_with_events, sum(events) AS events,
           min(hour) AS first_hour, max(hour) AS last_hour
    FROM hours GROUP BY 1, 2
)
SELECT s.account_id, s.aws_region, s.events, s.hours_with_events,
       CAST(ceil((CAST(p.until_micros AS DOUBLE) - CAST(p.since_micros AS DOUBLE)) / 3600e6) AS BIGINT) AS hours_in_period,
       s.first_hour, s.last_hour,
       (SELECT count(*) FROM gaps g WHERE g.account_id = s.account_id AND g.aws_region = s.aws_region
          AND g.previous IS NOT NULL AND g.hour - g.previous > INTERVAL '3 hours') AS gaps_over_3h,
       (SELECT max(g.hour - g.previous) FROM gaps g WHERE g.account_id = s.account_id
          AND g.aws_region = s.aws_region AND g.previous IS NOT NULL) AS longest_gap
FROM summary s CROSS JOIN report_period p
ORDER BY s.account_id, s.aws_region
