// The contract between the SSH layer and its users (discovery, apply protocol, UI).

export interface ExecResult {
  /** Always a number: a command whose link died (ssh2 reports code null) is thrown, not returned. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ExecOptions {
  /** Data for the command: rulesets and scripts travel here, never inside the command string. */
  readonly stdin?: string | Buffer;
  /** Run as root: directly when the login is root, otherwise through `sudo -n` (or `sudo -S` with a password the Prompter gave). */
  readonly root?: boolean;
  readonly timeoutMs?: number;
  /**
   * A command that asks a question: called with its output so far each time it grows, until it
   * returns a promise; the text that promise resolves to is written to the command's stdin,
   * which is then closed (`stdin` itself is written first and kept open). Never put data from
   * an inventory or a server into the answer: only words this program defines.
   */
  readonly reply?: (outputSoFar: string) => Promise<string> | undefined;
}

/** One connected server. */
export interface RemoteHost {
  /** The inventory name. */
  readonly name: string;
  /** How it was reached, e.g. "root@10.132.0.12:22 via tunnel-1". */
  readonly route: string;
  /**
   * Runs a FIXED command string written by this program. Never build it from an inventory,
   * a host name or a server's output: pass such data on stdin.
   */
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  /**
   * Asks this server's sshd to open a TCP connection from itself to address:port (a direct-tcpip
   * channel): no command runs. Absent on connections that cannot (tests' fakes).
   */
  openTcp?(address: string, port: number, timeoutMs: number): Promise<TcpTry>;
  close(): Promise<void>;
}

/**
 * One TCP connection attempt, judged as a firewall sees it: a completed handshake or a refusal
 * (the destination's kernel answered) proves the packet passed every firewall (`open`); silence
 * or an ICMP rejection proves it was stopped (`dropped`); anything else leaves it `untested`.
 */
export interface TcpTry {
  readonly outcome: 'open' | 'dropped' | 'untested';
  /** Why, in a few words: "handshake completed", "refused (no listener)", "no answer within 2 s". */
  readonly detail: string;
}

/** Where a host is, as the inventory says it. */
export interface HostTarget {
  readonly name: string;
  /** An alias from ~/.ssh/config or [user@]host[:port]. */
  readonly ssh: string;
  /** An inventory host name or an ssh destination, used when the ssh config gives no ProxyJump. */
  readonly jump?: string;
}

/** Questions only a person can answer; headless runs pass one that refuses. */
export interface Prompter {
  /** Unknown host key: show the SHA256 fingerprint and ask. True = trust and remember it. */
  confirmHostKey(host: string, keyType: string, fingerprint: string): Promise<boolean>;
  /** A secret (key passphrase, sudo password); undefined = none given. */
  askSecret(host: string, question: string): Promise<string | undefined>;
}

export interface ConnectOptions {
  /** Open NEW connections for the whole chain (bastion included), shared with no ordinary connect. */
  readonly fresh?: boolean;
  /**
   * With `fresh`: connections opened under the same group id are shared by its members while any
   * of them is open (hosts behind one bastion prove their path over one new bastion link).
   */
  readonly freshGroup?: string;
}

export interface Connector {
  /** Opens (or reuses) the connection to a host, through its jump host when it has one. */
  connect(target: HostTarget, options?: ConnectOptions): Promise<RemoteHost>;
  /** Closes every connection this connector opened. */
  closeAll(): Promise<void>;
}
