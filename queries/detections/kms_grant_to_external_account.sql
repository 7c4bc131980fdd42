-- KMS grant to an external account
-- kms_grant_to_external_account: see kms_grant_to_external_account.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'CreateGrant on ' || coalesce(key_arn, 'a key') || ' to ' || max(grantee_principal) || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM (SELECT *,
             -- Every grantee form CloudTrail writes: an ARN, a bare account id, or a
             -- service form led by the account (`<account>:aws:ec2-infrastructure`).
             coalesce(arn_account(grantee_principal),
                      CASE WHEN regexp_like(grantee_principal, '^[0-9]{12}(:|$)')
                           THEN substr(grantee_principal, 1, 12) END) AS grantee_account
      FROM window_events
      WHERE event_name = 'CreateGrant' AND error_code IS NULL)
WHERE grantee_account IS NOT NULL AND grantee_account NOT IN (SELECT account_id FROM trusted_accounts)
GROUP BY principal, key_arn, account_id, aws_region
