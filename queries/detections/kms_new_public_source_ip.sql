-- KMS use from a public address never seen for the principal
-- kms_new_public_source_ip: see kms_new_public_source_ip.yaml for what it means, references and tests.
WITH known AS (
  SELECT DISTINCT principal FROM history_events WHERE principal IS NOT NULL
), seen AS (
  SELECT DISTINCT principal, ip_network(source_ip) AS network
  FROM history_events WHERE principal IS NOT NULL AND ip_network(source_ip) IS NOT NULL
)
SELECT w.principal, max(w.key_arn) AS key_arn, w.account_id, max(w.aws_region) AS aws_region,
       min(w.event_time) AS first_seen, max(w.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT w.source_ip) AS source_ips, array_agg(w.event_id) AS event_ids,
       'KMS calls by ' || w.principal || ' from ' || array_to_string(array_agg(DISTINCT w.source_ip), ', ')
         || ' (network ' || ip_network(w.source_ip) || ', not seen for it before)' AS summary,
       ip_network(w.source_ip) AS dedup_on
FROM window_events w
JOIN known k ON k.principal = w.principal
LEFT JOIN seen s ON s.principal = w.principal AND s.network = ip_network(w.source_ip)
WHERE s.principal IS NULL AND NOT w.via_aws_service AND w.source_ip IS NOT NULL
  AND NOT is_private_ip(w.source_ip) AND w.source_ip NOT LIKE '%.amazonaws.com' AND w.source_ip <> 'AWS Internal'
GROUP BY w.principal, w.account_id, ip_network(w.source_ip)
