-- A principal calling KMS through a VPC endpoint it has not used before
-- kms_vpce_new_endpoint: see kms_vpce_new_endpoint.yaml for what it means, references and tests.
WITH seen AS (
  SELECT principal, vpc_endpoint_id, count(*) AS n
  FROM history_events WHERE principal IS NOT NULL AND vpc_endpoint_id IS NOT NULL
  GROUP BY principal, vpc_endpoint_id
),
usual AS (
  SELECT principal, sum(n) AS calls FROM seen GROUP BY principal
)
SELECT w.principal, max(w.key_arn) AS key_arn, w.account_id, max(w.aws_region) AS aws_region,
       min(w.event_time) AS first_seen, max(w.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT w.source_ip) AS source_ips, array_agg(w.event_id) AS event_ids,
       count(*) || ' KMS call(s) by ' || w.principal || ' through VPC endpoint ' || w.vpc_endpoint_id
         || ', which it never used before (' || max(u.calls) || ' earlier calls through other endpoints)' AS summary,
       w.vpc_endpoint_id AS dedup_on
FROM window_events w
JOIN usual u ON u.principal = w.principal AND u.calls >= 20
LEFT JOIN seen s ON s.principal = w.principal AND s.vpc_endpoint_id = w.vpc_endpoint_id
WHERE w.vpc_endpoint_id IS NOT NULL AND s.vpc_endpoint_id IS NULL AND NOT w.via_aws_service
GROUP BY w.principal, w.account_id, w.vpc_endpoint_id
