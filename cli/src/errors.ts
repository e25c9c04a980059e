/**
 * The two ways a command fails, by exit code: a usage error (2) is the
 * command line's fault and prints the command's help hint; a command error (1)
 * is the API's answer or the user's input (a file, a document) and prints
 * what went wrong.
 */
export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

export class CommandError extends Error {
  /** Lines printed after the message, e.g. one per field error. */
  readonly details: string[];
  constructor(message: string, details: string[] = []) {
    super(message);
    this.details = details;
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
