-- Sensitive KMS admin action by a person without MFA
-- kms_admin_action_without_mfa: see kms_admin_action_without_mfa.yaml for what it means, references and tests.
-- A person is told by identity, never by user agent (callers choose it): IAM users, root,
-- federated users, Identity Center sessions (AWSReservedSSO_ roles) and sessions named
-- after an e-mail address (SAML and web-identity federation). Identity Center checks MFA at
-- sign-in and records "false" in every session: its sessions are one low alert per person
-- and day, saying so, not one per key.
WITH admin AS (
  SELECT *,
         principal_type = 'AssumedRole' AND session_issuer_arn LIKE '%/AWSReservedSSO\_%' ESCAPE '\' AS sso,
         CASE WHEN principal_type = 'AssumedRole' AND session_issuer_arn LIKE '%/AWSReservedSSO\_%' ESCAPE '\'
              THEN NULL ELSE key_arn END AS alert_key
  FROM window_events
  WHERE event_name IN ('ScheduleKeyDeletion', 'DisableKey', 'DisableKeyRotation', 'PutKeyPolicy',
                       'CreateGrant', 'RevokeGrant', 'DeleteAlias', 'UpdateAlias',
                       'ImportKeyMaterial', 'DeleteImportedKeyMaterial', 'ReplicateKey',
                       'UpdatePrimaryRegion', 'UpdateCustomKeyStore', 'DisconnectCustomKeyStore',
                       'DeleteCustomKeyStore', 'TagResource', 'UntagResource')
    AND error_code IS NULL AND NOT via_aws_service AND coalesce(mfa_authenticated, false) = false
    AND (principal_type IN ('IAMUser', 'Root', 'FederatedUser')
         OR (principal_type = 'AssumedRole'
             AND (session_issuer_arn LIKE '%/AWSReservedSSO\_%' ESCAPE '\'
                  OR regexp_like(principal_arn, '/[^/]+@[^/]+$'))))
)
SELECT principal, coalesce(alert_key, max(key_arn)) AS key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       array_to_string(array_agg(DISTINCT event_name), ', ') || ' without MFA by ' || coalesce(principal, 'an unknown principal')
         || CASE WHEN bool_or(sso) THEN ' (an Identity Center session: MFA is checked at sign-in and not recorded; confirm the sign-in policy requires it)' ELSE '' END AS summary,
       CASE WHEN bool_or(sso) THEN 'low' ELSE 'medium' END AS severity,
       CASE WHEN bool_or(sso) THEN 'sso' ELSE NULL END AS dedup_on
FROM admin
GROUP BY principal, account_id, aws_region, alert_key
