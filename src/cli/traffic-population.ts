/**
 * The traffic generator's population (traffic-generator.ts): users and their variants, their
 * activity and click propensity, and the query vocabulary with its surface forms.
 */
import { fnv1a, Rng } from "./traffic-random.js";

export const VARIANTS = ["search_v1", "search_v2"] as const;

export function userIdOf(index: number): string {
  return `user_${index}`;
}

/** 50/50 by a hash of the user id, so a user always sees the same variant. */
export function variantOf(userId: string): string {
  return VARIANTS[fnv1a(userId) % VARIANTS.length]!;
}

/** Pareto (alpha 1.16: roughly "80% of searches from 20% of users"), capped at 300x the least active. */
export function userActivityWeights(users: number, seed: number): Float64Array {
  const rng = new Rng(seed, 1);
  const alpha = 1.16;
  const weights = new Float64Array(users);
  for (let i = 0; i < users; i++) weights[i] = Math.min(300, (1 - rng.next()) ** (-1 / alpha));
  return weights;
}

/**
 * Each user's lasting inclination to click, a multiplier of the variant's click probability:
 * log-normal with mean 1 (sigma 0.6), so some users click far more than others, week after week,
 * as real users do (and as CUPED and the statistics over users need to be tested against).
 */
const CLICK_PROPENSITY_SIGMA = 0.6;
export function userClickPropensity(users: number, seed: number): Float64Array {
  const rng = new Rng(seed, 4);
  const propensity = new Float64Array(users);
  for (let i = 0; i < users; i++) propensity[i] = rng.logNormal(Math.exp((-CLICK_PROPENSITY_SIGMA * CLICK_PROPENSITY_SIGMA) / 2), CLICK_PROPENSITY_SIGMA);
  return propensity;
}

const NOUNS = [
  "shoes", "sneakers", "boots", "sandals", "jacket", "coat", "hoodie", "t-shirt", "shirt", "jeans",
  "dress", "skirt", "shorts", "socks", "backpack", "handbag", "wallet", "watch", "sunglasses", "hat",
  "scarf", "gloves", "belt", "headphones", "earbuds", "speaker", "laptop", "tablet", "phone case", "charger",
  "keyboard", "mouse", "monitor", "webcam", "router", "smartwatch", "camera", "tripod", "drone", "tv",
  "blender", "coffee maker", "kettle", "toaster", "air fryer", "vacuum", "lamp", "desk", "office chair", "sofa",
  "mattress", "pillow", "blanket", "towels", "curtains", "rug", "mug", "water bottle", "lunch box", "yoga mat",
  "dumbbells", "bike", "helmet", "tent", "sleeping bag", "running shoes", "football", "tennis racket", "board game", "puzzle",
  "building blocks", "doll", "perfume", "shampoo", "sunscreen", "lipstick", "toothbrush", "vitamins", "dog food", "cat litter",
];
const ATTRIBUTES = [
  "black", "white", "blue", "red", "green", "grey", "pink", "navy", "beige", "brown",
  "yellow", "purple", "orange", "leather", "wool", "cotton", "linen", "denim", "stainless steel", "wooden",
  "bamboo", "silver", "gold", "waterproof", "wireless",
];
const ADJECTIVES = [
  "cheap", "best", "small", "large", "kids", "mens", "womens", "vintage", "organic", "portable",
  "lightweight", "foldable", "ergonomic", "slim", "oversized", "warm", "summer", "winter", "premium", "budget",
  "gaming", "outdoor", "travel", "smart", "electric", "mini", "compact", "heavy duty", "eco", "classic",
];
const BRANDS = [
  "acme", "northwind", "contoso", "fabrikam", "zephyr", "orion", "lumen", "nimbus", "atlas", "vertex",
  "kestrel", "aurora", "summit", "harbor", "pioneer", "evergreen", "polaris", "cobalt", "juniper", "meridian",
];
const SUFFIXES = ["for kids", "for men", "for women", "on sale", "size 10", "set of 2", "with case", "xl", "refurbished", "gift"];

export function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * `size` distinct queries, most popular first: single product words, then two-word queries,
 * then longer ones (popular searches tend to be short).
 */
export function buildVocabulary(size: number, seed: number): string[] {
  const rng = new Rng(seed, 2);
  const pick = <T>(list: readonly T[]): T => list[rng.int(list.length)]!;
  const vocabulary = shuffle([...NOUNS], rng);
  const seen = new Set(vocabulary);
  const tier2: string[] = [];
  for (const noun of NOUNS) {
    for (const a of ATTRIBUTES) tier2.push(`${a} ${noun}`);
    for (const a of ADJECTIVES) tier2.push(`${a} ${noun}`);
    for (const b of BRANDS) tier2.push(`${b} ${noun}`);
  }
  for (const q of shuffle(tier2, rng)) if (!seen.has(q)) (seen.add(q), vocabulary.push(q));
  const patterns: (() => string)[] = [
    () => `${pick(ADJECTIVES)} ${pick(ATTRIBUTES)} ${pick(NOUNS)}`,
    () => `${pick(BRANDS)} ${pick(ATTRIBUTES)} ${pick(NOUNS)}`,
    () => `${pick(NOUNS)} ${pick(SUFFIXES)}`,
    () => `${pick(BRANDS)} ${pick(NOUNS)} ${pick(SUFFIXES)}`,
    () => `${pick(ADJECTIVES)} ${pick(NOUNS)} ${pick(SUFFIXES)}`,
    () => `${pick(BRANDS)} ${pick(ADJECTIVES)} ${pick(ATTRIBUTES)} ${pick(NOUNS)}`,
  ];
  // The tier-3 space has well over a million combinations, so this ends quickly.
  while (vocabulary.length < size) {
    const q = pick(patterns)();
    if (!seen.has(q)) (seen.add(q), vocabulary.push(q));
  }
  return vocabulary.slice(0, size);
}

/** How a user actually typed a query now and then: other case, stray spaces. */
export function surfaceForm(query: string, rng: Rng): string {
  if (rng.next() >= 0.04) return query;
  switch (rng.int(3)) {
    case 0:
      return query.replace(/\b\p{L}/gu, (c) => c.toUpperCase());
    case 1:
      return `  ${query.replace(/ /g, "  ")} `;
    default:
      return query.toUpperCase();
  }
}
