-- Burst of AccessDenied KMS calls from one principal
-- kms_access_denied_burst: see kms_access_denied_burst.yaml for what it means, references and tests.
-- Sliding 10-minute windows: each denial looks back 10 minutes, so a burst split by a
-- clock boundary (9 + 9) is one burst of 18.
WITH denied AS (
  SELECT principal, account_id, aws_region, event_time, event_id, source_ip,
         coalesce(key_arn, key_ref, '?') AS k
  FROM window_events
  WHERE error_code IN ('AccessDenied', 'AccessDeniedException')
),
ends AS (
  SELECT d.principal, d.account_id, d.event_time AS at
  FROM denied d
  JOIN denied e ON e.account_id = d.account_id
                AND coalesce(e.principal, '') = coalesce(d.principal, '')
                AND e.event_time > d.event_time - INTERVAL '10 minutes'
                AND e.event_time <= d.event_time
  GROUP BY d.principal, d.account_id, d.event_time
  HAVING count(*) >= 10 OR count(DISTINCT e.k) >= 5
),
spans AS (
  SELECT principal, account_id, min(at) - INTERVAL '10 minutes' AS lo, max(at) AS hi
  FROM ends GROUP BY principal, account_id
)
SELECT x.principal, CAST(NULL AS VARCHAR) AS key_arn, x.account_id, max(x.aws_region) AS aws_region,
       min(x.event_time) AS first_seen, max(x.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT x.source_ip) AS source_ips, array_agg(x.event_id) AS event_ids,
       count(*) || ' AccessDenied KMS calls on ' || count(DISTINCT x.k) || ' key(s) in bursts of 10 minutes by ' || coalesce(x.principal, 'an unknown principal') AS summary
FROM denied x
JOIN spans s ON s.account_id = x.account_id AND coalesce(s.principal, '') = coalesce(x.principal, '')
            AND x.event_time > s.lo AND x.event_time <= s.hi
GROUP BY x.principal, x.account_id
