/** Count-based CTR fields shared by GetCtr (overall and per variant) and GetVariantComparison's variants. */
import { ratio } from "../core/metrics.js";
import type { EventTotals } from "../store/metrics-queries.js";

export function ctrFields(t: EventTotals) {
  const searchCtr = ratio(t.searchesWithClicks, t.impressions);
  return {
    ctr: ratio(t.clicks, t.impressions),
    clicks: BigInt(t.clicks),
    impressions: BigInt(t.impressions),
    searchCtr,
    noClickRate: searchCtr === undefined ? undefined : 1 - searchCtr,
    noResultsRate: ratio(t.noResults, t.impressions),
    users: BigInt(t.users),
    searchesWithClicks: BigInt(t.searchesWithClicks),
    noResultsSearches: BigInt(t.noResults),
  };
}
