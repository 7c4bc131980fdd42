-- An alias in use moved to another key, or deleted
-- kms_alias_moved: see kms_alias_moved.yaml for what it means, references and tests.
WITH everything AS (
    SELECT alias_name, event_name, event_time, key_arn, key_origin, key_policy, error_code FROM history_events
    UNION ALL
    SELECT alias_name, event_name, event_time, key_arn, key_origin, key_policy, error_code FROM window_events
),
uses AS (
    SELECT alias_name, min(event_time) AS first_use, count(*) AS uses
    FROM everything
    WHERE alias_name IS NOT NULL AND error_code IS NULL
      AND event_name NOT IN ('CreateAlias', 'UpdateAlias', 'DeleteAlias', 'ListAliases')
    GROUP BY alias_name
),
created AS (
    SELECT key_arn, min(event_time) AS created, max(key_origin) AS origin
    FROM everything WHERE event_name = 'CreateKey' AND error_code IS NULL AND key_arn IS NOT NULL
    GROUP BY key_arn
),
-- Keys whose policy (as last seen set) lets in the public or an untrusted account.
exposed AS (
    SELECT DISTINCT key_arn FROM (
        SELECT key_arn, unnest(policy_findings(key_policy)) AS f
        FROM everything
        WHERE event_name IN ('CreateKey', 'PutKeyPolicy') AND error_code IS NULL
          AND key_policy IS NOT NULL AND key_arn IS NOT NULL)
    WHERE f['kind'] IN ('public_principal', 'not_principal_allow')
       OR (f['kind'] = 'account_principal' AND f['value'] NOT IN (SELECT account_id FROM trusted_accounts))
)
SELECT c.principal, c.key_arn, c.account_id, c.aws_region,
       min(c.event_time) AS first_seen, max(c.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT c.source_ip) AS source_ips, array_agg(c.event_id) AS event_ids,
       CASE WHEN c.event_name = 'DeleteAlias'
            THEN c.alias_name || ', used by ' || max(u.uses) || ' call(s), deleted by ' || coalesce(c.principal, 'an unknown principal')
            ELSE c.alias_name || ', used by ' || max(u.uses) || ' call(s), now points to ' || coalesce(c.key_arn, 'another key')
                 || CASE WHEN max(k.created) IS NOT NULL THEN ' (a key created ' || CAST(max(k.created) AS VARCHAR) || ')' ELSE '' END
                 || CASE WHEN max(k.origin) IS NOT NULL AND max(k.origin) <> 'AWS_KMS' THEN ' with ' || max(k.origin) || ' key material' ELSE '' END
                 || CASE WHEN max(x.key_arn) IS NOT NULL THEN ' whose key policy lets in the public or an untrusted account' ELSE '' END
                 || ', moved by ' || coalesce(c.principal, 'an unknown principal') END AS summary,
       CASE WHEN c.event_name = 'UpdateAlias'
                 AND (max(k.created) > min(c.event_time) - INTERVAL '7 days' OR coalesce(max(k.origin), 'AWS_KMS') <> 'AWS_KMS'
                      OR max(x.key_arn) IS NOT NULL)
            THEN 'critical' ELSE 'high' END AS severity,
       c.alias_name AS dedup_on
FROM window_events c
JOIN uses u ON u.alias_name = c.alias_name AND u.first_use < c.event_time
LEFT JOIN created k ON k.key_arn = c.key_arn
LEFT JOIN exposed x ON x.key_arn = c.key_arn
WHERE c.event_name IN ('UpdateAlias', 'DeleteAlias') AND c.error_code IS NULL
GROUP BY c.principal, c.key_arn, c.account_id, c.aws_region, c.alias_name, c.event_name
