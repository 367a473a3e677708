// Runs one of the real npm metadata clients (pinned in this folder's package.json) against
// 169.254.169.254 and prints what it returned as JSON. Run inside a guest namespace:
//   node probe.cjs imds | imds-v1-disabled | gcp | azure
'use strict';

async function main(which) {
  switch (which) {
    case 'imds':
    case 'imds-v1-disabled': {
      const { fromInstanceMetadata } = require('@smithy/credential-provider-imds');
      const creds = await fromInstanceMetadata({
        timeout: 3000,
        maxRetries: 0,
        ...(which === 'imds-v1-disabled' ? { ec2MetadataV1Disabled: true } : {}),
      })();
      return { ...creds, expiration: creds.expiration ? creds.expiration.toISOString() : null };
    }
    case 'gcp': {
      const gcp = require('gcp-metadata');
      const available = await gcp.isAvailable();
      const hostname = await gcp.instance('hostname');
      const id = String(await gcp.instance('id'));
      const projectId = await gcp.project('project-id');
      return { available, hostname, id, projectId };
    }
    case 'azure': {
      const { ManagedIdentityCredential } = require('@azure/identity');
      const cred = new ManagedIdentityCredential();
      const tok = await cred.getToken('https://management.azure.com/.default');
      return tok;
    }
    default:
      throw new Error(`unknown client ${which}`);
  }
}

main(process.argv[2]).then(
  (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
  (e) => {
    process.stderr.write(`${e && e.stack ? e.stack : String(e)}\n`);
    process.exit(1);
  },
);
