/** `linkgate serve`: run in the foreground until SIGTERM/SIGINT; SIGHUP reloads instances. */
import { formatProblems, loadConfigFile } from '../config/load.js';
import { startDaemon } from './daemon.js';
import { ConfigConflictError } from './instances.js';
import { createLogger } from './logger.js';

/** Resolves with the process exit code. */
export async function serve(configFile: string): Promise<number> {
  const res = loadConfigFile(configFile);
  if (!res.ok) {
    process.stderr.write(`linkgate: invalid configuration ${configFile}:\n${formatProblems(res.problems)}\n`);
    return 2;
  }
  const log = createLogger();
  let daemon;
  try {
    daemon = await startDaemon(res.config, configFile, log);
  } catch (err) {
    if (err instanceof ConfigConflictError) {
      process.stderr.write(`linkgate: invalid configuration ${configFile}:\n${formatProblems(err.problems)}\n`);
      log.error({ problems: err.problems }, 'cannot start: the configuration conflicts with the admin API state');
      return 2;
    }
    log.error({ err: err instanceof Error ? err.message : String(err) }, 'cannot start');
    return 1;
  }
  const d = daemon;
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      d.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err: String(err) }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', () => void d.reload());
  });
}
