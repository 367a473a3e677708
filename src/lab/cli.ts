/** `linkgate lab up|down`: guest namespaces for trying things by hand. */
import { createLab, labDown } from './lab.js';

export async function labUpCommand(opts: { guests: number; prefix?: string }): Promise<number> {
  const lab = await createLab(opts);
  const config = lab.config();
  const path = await lab.writeConfig(config);
  const g1 = lab.guest(1);
  process.stdout.write(
    `${JSON.stringify(config, null, 2)}\n\n` +
      `# config written to ${path}\n` +
      `# run the daemon:   ip netns exec ${lab.hv} bin/linkgate serve --config ${path}\n` +
      `# ask as guest 1:   ip netns exec ${g1.ns} curl http://169.254.169.254/latest/meta-data/instance-id\n` +
      `# tear down:        bin/linkgate lab down --prefix ${lab.prefix}\n`,
  );
  return 0;
}

export async function labDownCommand(prefix: string | undefined): Promise<number> {
  const results = await labDown(prefix, { kill: true });
  if (!results.length) {
    process.stdout.write(prefix ? `no lab named ${prefix}\n` : 'no labs\n');
    return prefix ? 1 : 0;
  }
  for (const r of results) {
    process.stdout.write(
      `removed lab ${r.prefix}: ${r.namespaces.length} namespaces${r.pids.length ? `, stopped pids ${r.pids.join(' ')}` : ''}\n`,
    );
  }
  return 0;
}
