-- Principal that uses a VPC endpoint called KMS without it
-- kms_vpce_bypass: see kms_vpce_bypass.yaml for what it means, references and tests.
WITH base AS (
  SELECT principal, count(*) AS n, count(vpc_endpoint_id) AS via_vpce
  FROM history_events WHERE NOT via_aws_service AND principal IS NOT NULL
  GROUP BY principal
)
SELECT w.principal, max(w.key_arn) AS key_arn, w.account_id, max(w.aws_region) AS aws_region,
       min(w.event_time) AS first_seen, max(w.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT w.source_ip) AS source_ips, array_agg(w.event_id) AS event_ids,
       count(*) || ' KMS calls by ' || w.principal || ' without its usual VPC endpoint' AS summary
FROM window_events w JOIN base b ON b.principal = w.principal
WHERE NOT w.via_aws_service AND w.vpc_endpoint_id IS NULL AND b.n >= 20 AND b.via_vpce >= 0.95 * b.n
GROUP BY w.principal, w.account_id
