/**
 * What the operator declares: the settings of the built-in handlers and the tasks of the config
 * file's `tasks` map, once checked and resolved (`config.ts` reads them). The handler contract
 * itself is `types.ts`.
 *
 * @module
 */

/** Settings that the operator gives the built-in handlers (`serve --sms-delay`, …). */
export interface HandlerSettings {
  /** How long the `sms` task pretends to send, in milliseconds. */
  smsDelayMs: number;
  /**
   * URLs of extra handler modules, each exporting `handlers: TaskHandler[]`. Loaded on the server
   * (to validate) and in every worker (to run).
   */
  modules?: string[];
  /**
   * The operator's tasks from the config file's `tasks` map (see `task/config.ts`). When given,
   * they are the server's tasks: a built-in is served only if the map declares it (`builtin`).
   */
  tasks?: TaskSpec[];
}

/** What every declared task may set, whatever its kind. Durations in ms, sizes in bytes. */
interface TaskSpecBase {
  name: string;
  /** Where it was declared, for messages: `config file /etc/asynctask.json: tasks.sms`. */
  where?: string;
  description?: string;
  timeoutMs?: number;
  retries?: number;
  concurrency?: number;
  /** A JSON Schema the task's data must match before it is accepted. */
  schema?: Record<string, unknown> | boolean;
  /** The priority of its tasks that give none (-100…100). */
  priority?: number;
  /** A template over the data (`"{phone}"`): tasks with the same key run once at a time (`unique_key`). */
  unique?: string;
  /** How long after a unique task ends a duplicate still gets its result instead of running again. */
  uniqueForMs?: number;
  /** Rate limits: starts per second, minute or hour, per key where a template is given (checked already). */
  rate?: { limit: string; key?: string; burst?: number }[];
}

/** An operator's task, as the config file declares it (already checked and resolved). */
export type TaskSpec =
  & TaskSpecBase
  & (
    | {
      kind: "command";
      /** argv: the program (an absolute path, or a name looked up in PATH) and its arguments. */
      command: string[];
      cwd?: string;
      env?: Record<string, string>;
      /** Variables of the server's environment the program must not see (the webhooks' `secret-env`s). */
      hideEnv?: string[];
      /** Most bytes of stdout kept as the result. */
      maxOutput: number;
    }
    | {
      kind: "webhook";
      url: string;
      headers: Record<string, string>;
      /** The HMAC-SHA256 key of the signature header; no signature without it. */
      secret?: string;
      /** Most bytes of the response body kept as the result. */
      maxOutput: number;
    }
    | {
      kind: "module";
      /** The module's URL (`file:///…`). */
      module: string;
    }
    | {
      /** One of the built-in tasks (`sms`, `echo`, `sleep`), by its own name, with this entry's limits. */
      kind: "builtin";
    }
  );
