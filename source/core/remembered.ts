// A large fleet asks the same questions thousands of times (an address's reading, a network's
// spelling, an ssh destination): each answer is worked out once per key and shared. Answers are
// read-only by type. Bounded: when full, the memory starts over — answers are worked out again,
// never wrong.

/** `compute`, remembered per key (an undefined answer is remembered too). */
export function rememberedPerKey<T extends object>(compute: (key: string) => T | undefined, limit = 200_000): (key: string) => T | undefined {
  const answers = new Map<string, T | null>();
  return (key) => {
    let answer = answers.get(key);
    if (answer === undefined) {
      answer = compute(key) ?? null;
      if (answers.size >= limit) answers.clear();
      answers.set(key, answer);
    }
    return answer ?? undefined;
  };
}
