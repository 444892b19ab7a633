// A large fleet asks the same questions thousands of times (an address's reading, a network's
// spelling, an ssh destination): each answer is worked out once per key and shared. Answers are
// read-only by type. Bounded: when full, the memory starts over — answers are worked out again,
// never wrong.

/**
 * Given to `compute`: the answer already remembered for `key` (another spelling of the same
 * question), else `make()`'s, remembered for it from now on. Lets two keys share one answer
 * without working it out twice.
 */
export type RememberedOr<T> = (key: string, make: () => T) => T;

/** `compute`, remembered per key (an undefined answer is remembered too). */
export function rememberedPerKey<T extends object>(
  compute: (key: string, rememberedOr: RememberedOr<T>) => T | undefined,
  limit = 200_000,
): (key: string) => T | undefined {
  const answers = new Map<string, T | null>();
  const remember = (key: string, answer: T | null): void => {
    if (answers.size >= limit) answers.clear();
    answers.set(key, answer);
  };
  const rememberedOr: RememberedOr<T> = (key, make) => {
    let answer = answers.get(key);
    if (!answer) remember(key, (answer = make()));
    return answer;
  };
  return (key) => {
    let answer = answers.get(key);
    if (answer === undefined) {
      answer = compute(key, rememberedOr) ?? null;
      remember(key, answer);
    }
    return answer ?? undefined;
  };
}

/**
 * `compute`, remembered per object for as long as the object lives (an undefined answer is
 * remembered too): for questions asked of shared objects, such as the rule specs the compiler
 * shares between rulesets.
 */
export function rememberedPerObject<K extends object, T extends object>(compute: (key: K) => T | undefined): (key: K) => T | undefined {
  const answers = new WeakMap<K, T | null>();
  return (key) => {
    let answer = answers.get(key);
    if (answer === undefined) {
      answer = compute(key) ?? null;
      answers.set(key, answer);
    }
    return answer ?? undefined;
  };
}
