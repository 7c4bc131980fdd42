-- Our principals encrypting with a key owned by an untrusted account
-- kms_outside_key_used: see kms_outside_key_used.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       count(*) || ' ' || array_to_string(array_agg(DISTINCT event_name), '/') || ' call(s) with ' || key_arn
         || ', a key of untrusted account ' || key_account || ', by ' || coalesce(principal, 'an unknown principal')
         || CASE WHEN bool_or(via_aws_service) THEN ' through ' || coalesce(max(invoked_by), max(source_ip), 'an AWS service') ELSE '' END
         || ': data of ours now depends on a key someone else controls' AS summary,
       CASE WHEN bool_or(via_aws_service) THEN 'critical' ELSE 'high' END AS severity
FROM window_events
WHERE error_code IS NULL
  AND event_name IN ('Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext',
                     'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'CreateGrant')
  AND key_account IS NOT NULL AND key_account NOT IN (SELECT account_id FROM trusted_accounts)
  AND account_id IN (SELECT account_id FROM trusted_accounts)
  AND (principal_account IS NULL OR principal_account IN (SELECT account_id FROM trusted_accounts))
GROUP BY principal, key_arn, key_account, account_id, aws_region
