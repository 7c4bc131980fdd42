WITH findings AS (
    SELECT event_id,
           array_agg(f['kind'] || CASE WHEN f['value'] IS NULL OR f['value'] = '' THEN '' ELSE ':' || f['value'] END) AS policy_findings
    FROM (SELECT event_id, unnest(policy_findings(key_policy)) AS f
          FROM period_events WHERE key_policy IS NOT NULL)
    WHERE f['kind'] <> 'root_access'
    GROUP BY event_id
),
trusted AS (
    SELECT array_agg(account_id) AS accounts FROM trusted_accounts
),
named AS (
    SELECT event_id, array_agg(DISTINCT f['value']) AS accounts
    FROM (SELECT event_id, unnest(policy_findings(key_policy)) AS f
          FROM period_events WHERE key_policy IS NOT NULL)
    WHERE f['kind'] = 'account_principal'
    GROUP BY event_id
)
SELECT e.event_time, e.event_name, e.key_arn, e.principal, e.mfa_authenticated, e.source_ip,
       CASE
         WHEN e.event_name IN ('CreateGrant') THEN 'grantee ' || coalesce(e.grantee_principal, '?')
              || ' operations ' || coalesce(array_to_string(e.grant_operations, ','), '?')
         WHEN e.event_name IN ('RetireGrant', 'RevokeGrant') THEN 'grant ' || coalesce(e.grant_id, '?')
         WHEN e.event_name IN ('CreateAlias', 'UpdateAlias', 'DeleteAlias') THEN coalesce(e.alias_name, '?')
         ELSE NULL
       END AS detail,
       f.policy_findings,
       coalesce(e.bypass_policy_lockout_safety_check, false) AS lockout_check_bypassed,
       CASE
         WHEN e.event_name = 'CreateGrant' AND arn_account(e.grantee_principal) IS NOT NULL
              AND NOT array_has(t.accounts, arn_account(e.grantee_principal))
           THEN make_array(arn_account(e.grantee_principal))
         WHEN n.accounts IS NOT NULL THEN array_except(n.accounts, t.accounts)
       END AS external_accounts,
       e.error_code, e.event_id
FROM period_events e
CROSS JOIN trusted t
LEFT JOIN findings f ON f.event_id = e.event_id
LEFT JOIN named n ON n.event_id = e.event_id
WHERE e.event_name IN ('PutKeyPolicy', 'CreateKey', 'ReplicateKey', 'CreateGrant', 'RetireGrant', 'RevokeGrant',
                       'CreateAlias', 'UpdateAlias', 'DeleteAlias', 'UpdateKeyDescription',
                       'TagResource', 'UntagResource')
ORDER BY e.event_time, e.event_id
