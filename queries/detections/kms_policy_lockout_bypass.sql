-- Key policy lockout safety check bypassed
-- kms_policy_lockout_bypass: see kms_policy_lockout_bypass.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       max(event_name) || ' with bypassPolicyLockoutSafetyCheck on ' || coalesce(key_arn, 'a new key') || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name IN ('PutKeyPolicy', 'CreateKey', 'ReplicateKey') AND error_code IS NULL AND bypass_policy_lockout_safety_check
GROUP BY principal, key_arn, account_id, aws_region
