/**
 * Process-level safety net: if the process exits or is killed (SIGINT/SIGTERM/SIGHUP, or tap's
 * timeout SIGALRM) before a lab's teardown ran, kill its daemons and delete its namespaces
 * synchronously.
 */
import { activeLabs } from './lab.js';

let installed = false;

export function installLabSafetyNet(): void {
  if (installed) return;
  installed = true;
  const cleanup = (): void => {
    for (const lab of activeLabs()) lab.downSync();
  };
  process.on('exit', cleanup);
  // tap's timeout: the runner sends SIGALRM, the test process's own handler reports the timeout
  // and the process then ends by the signal, without 'exit' handlers: clean up first. Not
  // re-raised here (tap handles it).
  process.on('SIGALRM', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanup();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
