/** JSON lines on stdout (pino, synchronous so that "ready" and "stopped" are never lost). */
import pino from 'pino';
import type { Logger } from '../model/log.js';

export function createLogger(level: string = process.env.LINKGATE_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 1, sync: true }),
  );
}
