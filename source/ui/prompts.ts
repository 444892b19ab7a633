// The wizard's Prompter: the SSH layer asks (unknown host key, passphrase, sudo password),
// the question waits here until the screen shows it and the operator answers.
// Questions are answered one at a time, in the order they were asked.

import type {Prompter} from '../remote/types.js';

export type Question =
  | {readonly kind: 'host-key'; readonly host: string; readonly keyType: string; readonly fingerprint: string}
  | {readonly kind: 'secret'; readonly host: string; readonly question: string};

interface Waiting {
  readonly question: Question;
  readonly answer: (value: boolean | string | undefined) => void;
}

export class PromptQueue implements Prompter {
  private readonly waiting: Waiting[] = [];
  private readonly listeners = new Set<() => void>();

  confirmHostKey(host: string, keyType: string, fingerprint: string): Promise<boolean> {
    return new Promise((resolve) => {
      this.enqueue({kind: 'host-key', host, keyType, fingerprint}, (value) => resolve(value === true));
    });
  }

  askSecret(host: string, question: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      this.enqueue({kind: 'secret', host, question}, (value) => resolve(typeof value === 'string' && value !== '' ? value : undefined));
    });
  }

  /** The question the screen should show now, if any. */
  current(): Question | undefined {
    return this.waiting[0]?.question;
  }

  /** Answer the current question: a boolean for a host key, a string (or undefined) for a secret. */
  answer(value: boolean | string | undefined): void {
    const first = this.waiting.shift();
    if (!first) return;
    first.answer(value);
    this.notify();
  }

  /** Refuse everything still waiting (the operator left the screen or quit). */
  refuseAll(): void {
    while (this.waiting.length > 0) this.answer(undefined);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private enqueue(question: Question, answer: Waiting['answer']): void {
    this.waiting.push({question, answer});
    this.notify();
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}
