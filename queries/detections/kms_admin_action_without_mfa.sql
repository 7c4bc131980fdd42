-- Sensitive KMS admin action by a person without MFA
-- kms_admin_action_without_mfa: see kms_admin_action_without_mfa.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       array_to_string(array_agg(DISTINCT event_name), ', ') || ' without MFA by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name IN ('ScheduleKeyDeletion', 'PutKeyPolicy', 'DeleteAlias', 'DeleteImportedKeyMaterial', 'DisableKey')
  AND error_code IS NULL AND NOT via_aws_service AND coalesce(mfa_authenticated, false) = false
  AND (principal_type IN ('IAMUser', 'Root')
       OR (principal_type = 'AssumedRole'
           AND (session_issuer_arn LIKE '%/AWSReservedSSO_%' OR user_agent LIKE 'Mozilla/%')))
GROUP BY principal, key_arn, account_id, aws_region
