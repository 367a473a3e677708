/**
 * bin/linkgate: commands, flags and exit codes. Exit 0 ok, 1 runtime failure, 2 bad usage or
 * invalid configuration.
 */
import { parseArgs } from 'node:util';
import { formatProblems, loadConfigFile } from '../config/load.js';
import { serve } from '../daemon/run.js';
import { runDemo } from '../lab/demo.js';
import { labDownCommand, labUpCommand } from '../lab/cli.js';

const USAGE: Record<string, string> = {
  main: `linkgate: the metadata gateway for your own hypervisors

usage: linkgate <command> [options]

commands:
  serve --config FILE      run the daemon in the foreground (SIGTERM/SIGINT stop it, SIGHUP reloads)
  check --config FILE      validate a configuration: exit 0, or exit 2 listing every problem
  lab up --guests N        create guest namespaces to try things by hand; prints the config it wrote
  lab down                 remove what 'lab up' created
  demo                     lab + daemon + a request from every guest + a spoofing attempt (npm start)

'linkgate <command> --help' tells more.`,
  serve: `usage: linkgate serve --config FILE

Runs the daemon in the foreground in the current network namespace: owns the nftables table
'linkgate', puts the metadata address on lo, routes replies to each guest via its port, and
serves HTTP on the metadata address. Logs are JSON lines on stdout; the first "msg":"ready"
line says it serves. SIGTERM/SIGINT: drain, remove all kernel state, exit 0. SIGHUP: reload
the instances from FILE (an invalid file is refused and the running set kept).`,
  check: `usage: linkgate check --config FILE

Validates FILE (YAML, or JSON when it ends in .json). Exit 0 when valid; exit 2 with one line
per problem: '<field path>: <reason>'.`,
  lab: `usage: linkgate lab up [--guests N] [--prefix P]
       linkgate lab down [--prefix P]

'up' creates a hypervisor namespace <prefix>-hv and N guest namespaces wired to it with veth
pairs, writes a linkgate config for them and prints it (and its path). Run the daemon with
  ip netns exec <prefix>-hv bin/linkgate serve --config <path>
and try a guest with
  ip netns exec <prefix>-g1 curl http://169.254.169.254/latest/meta-data/instance-id
'down' removes exactly what 'up' created (all labs, or the one named by --prefix).`,
  demo: `usage: linkgate demo [--guests N]

Creates a lab (default 4 guests), starts the daemon in its hypervisor namespace, asks
169.254.169.254 for the instance id from every guest, lets one guest forge another's MAC and
IP, prints a summary table and tears everything down.`,
};

function usage(cmd: string, code: number): number {
  (code === 0 ? process.stdout : process.stderr).write(`${USAGE[cmd] ?? USAGE.main}\n`);
  return code;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') return usage('main', cmd === undefined ? 2 : 0);
  if (!(cmd in USAGE) || cmd === 'main') {
    process.stderr.write(`linkgate: unknown command '${cmd}'\n`);
    return usage('main', 2);
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        guests: { type: 'string' },
        prefix: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`linkgate ${cmd}: ${err instanceof Error ? err.message : String(err)}\n`);
    return usage(cmd, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) return usage(cmd, 0);
  const guests = values.guests === undefined ? undefined : Number(values.guests);
  if (guests !== undefined && (!Number.isInteger(guests) || guests < 1 || guests > 250)) {
    process.stderr.write(`linkgate ${cmd}: --guests must be an integer from 1 to 250\n`);
    return 2;
  }

  switch (cmd) {
    case 'serve':
    case 'check': {
      if (!values.config || positionals.length) return usage(cmd, 2);
      if (cmd === 'serve') return serve(values.config);
      const res = loadConfigFile(values.config);
      if (!res.ok) {
        process.stderr.write(`${values.config}: ${res.problems.length} problem(s)\n${formatProblems(res.problems)}\n`);
        return 2;
      }
      process.stdout.write(`${values.config}: ok (${res.config.instances.length} instances)\n`);
      return 0;
    }
    case 'lab': {
      const sub = positionals[0];
      if (sub === 'up' && positionals.length === 1)
        return labUpCommand({ guests: guests ?? 2, ...(values.prefix ? { prefix: values.prefix } : {}) });
      if (sub === 'down' && positionals.length === 1) return labDownCommand(values.prefix);
      return usage('lab', 2);
    }
    case 'demo':
      if (positionals.length) return usage('demo', 2);
      return runDemo({ guests: guests ?? 4 });
    default:
      return usage('main', 2);
  }
}
