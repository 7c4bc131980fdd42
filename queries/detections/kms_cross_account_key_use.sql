-- Cross-account key use not through an AWS service
-- kms_cross_account_key_use: see kms_cross_account_key_use.yaml for what it means, references and tests.
WITH pairs AS (
  SELECT DISTINCT principal, key_arn FROM history_events WHERE principal IS NOT NULL AND key_arn IS NOT NULL
), cur AS (
  SELECT w.*, t.account_id IS NULL AS external, p.principal IS NULL AS new_pair
  FROM window_events w
  LEFT JOIN pairs p ON p.principal = w.principal AND p.key_arn = w.key_arn
  LEFT JOIN trusted_accounts t ON t.account_id = w.principal_account
  WHERE NOT w.via_aws_service AND w.error_code IS NULL AND w.key_account IS NOT NULL
    AND w.principal_account IS NOT NULL AND w.key_account <> w.principal_account
)
SELECT principal, key_arn, account_id, max(aws_region) AS aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'Key ' || key_arn || ' of account ' || max(key_account) || ' used by ' || principal
         || CASE WHEN bool_or(external) THEN ' of external account ' ELSE ' of account ' END || max(principal_account) AS summary,
       CASE WHEN bool_or(external) THEN 'high' ELSE 'medium' END AS severity
FROM cur
WHERE external OR new_pair
GROUP BY principal, key_arn, account_id
