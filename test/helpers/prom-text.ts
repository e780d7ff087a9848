/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests: it throws on anything a
 * scraper could misread, not only on what it would reject.
 *
 *   - a metric name is [a-zA-Z_:][a-zA-Z0-9_:]*, a label name [a-zA-Z_][a-zA-Z0-9_]* (no __ prefix);
 *     label values escape only \\, \" and \n; a value is a float, NaN, +Inf or -Inf; no timestamps
 *   - one TYPE and at most one HELP per family, both before its first sample; the samples of a family
 *     are contiguous (a family never reopens); no sample appears twice (same name and labels)
 *   - a sample belongs to its family: the family's own name, or for a histogram _bucket (with le),
 *     _sum and _count, for a summary _sum and _count (and quantile)
 *   - counters are not negative; histogram buckets are cumulative, end with le="+Inf", and that bucket
 *     equals _count
 */

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromFamily {
  readonly name: string;
  readonly type: FamilyType;
  readonly help: string | undefined;
  readonly samples: readonly PromSample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const types: readonly FamilyType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

/** Parses `text` into families by name. @throws Error naming the line and the rule it breaks. */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  if (text !== '' && !text.endsWith('\n')) throw new Error('the exposition does not end with a new line');
  const families = new Map<string, { name: string; type: FamilyType | undefined; help: string | undefined; samples: PromSample[] }>();
  const closed = new Set<string>();
  let current: string | undefined;
  const seen = new Set<string>();
  const lines = text.split('\n').slice(0, -1);
  const open = (name: string, lineNo: number): { name: string; type: FamilyType | undefined; help: string | undefined; samples: PromSample[] } => {
    if (current !== name) {
      if (closed.has(name)) throw new Error(`line ${lineNo}: family ${name} appears again after another family`);
      if (current !== undefined) closed.add(current);
      current = name;
    }
    let family = families.get(name);
    if (family === undefined) {
      family = { name, type: undefined, help: undefined, samples: [] };
      families.set(name, family);
    }
    return family;
  };
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line === '') return;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name = '', rest = ''] = meta;
      if (!metricName.test(name)) throw new Error(`line ${lineNo}: bad metric name ${JSON.stringify(name)}`);
      const family = open(name, lineNo);
      if (family.samples.length > 0) throw new Error(`line ${lineNo}: # ${kind} ${name} after its samples`);
      if (kind === 'TYPE') {
        if (family.type !== undefined) throw new Error(`line ${lineNo}: a second TYPE for ${name}`);
        const type = types.find((t) => t === rest);
        if (type === undefined) throw new Error(`line ${lineNo}: unknown type ${JSON.stringify(rest)}`);
        family.type = type;
      } else {
        if (family.help !== undefined) throw new Error(`line ${lineNo}: a second HELP for ${name}`);
        if (/\\(?![\\n])/.test(rest)) throw new Error(`line ${lineNo}: bad escape in HELP`);
        family.help = rest;
      }
      return;
    }
    if (line.startsWith('#')) return;
    const sample = parseSample(line, lineNo);
    const familyName = familyOf(sample.name, families, current);
    const family = open(familyName, lineNo);
    if (family.type === undefined) throw new Error(`line ${lineNo}: sample ${sample.name} before the TYPE of ${familyName}`);
    checkSampleName(family.type, familyName, sample, lineNo);
    const key = `${sample.name}{${Object.entries(sample.labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    if (seen.has(key)) throw new Error(`line ${lineNo}: duplicate sample ${key}`);
    seen.add(key);
    if (family.type === 'counter' && !(sample.value >= 0)) throw new Error(`line ${lineNo}: counter ${sample.name} is ${sample.value}`);
    family.samples.push(sample);
  });
  const result = new Map<string, PromFamily>();
  for (const family of families.values()) {
    if (family.type === undefined) throw new Error(`family ${family.name} has no TYPE`);
    if (family.type === 'histogram') checkHistogram(family.name, family.samples);
    result.set(family.name, { name: family.name, type: family.type, help: family.help, samples: family.samples });
  }
  return result;
}

function parseSample(line: string, lineNo: number): PromSample {
  const head = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{|\s)/.exec(line);
  if (head === null) throw new Error(`line ${lineNo}: not a sample: ${JSON.stringify(line)}`);
  const name = head[1] ?? '';
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    while (!rest.startsWith('}')) {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
      if (label === null) throw new Error(`line ${lineNo}: bad labels: ${JSON.stringify(line)}`);
      const [whole, key = '', raw = '', comma] = label;
      if (!labelName.test(key) || key.startsWith('__')) throw new Error(`line ${lineNo}: bad label name ${key}`);
      if (key in labels) throw new Error(`line ${lineNo}: label ${key} twice`);
      labels[key] = raw.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(whole.length);
      if (comma === '' && !rest.startsWith('}')) throw new Error(`line ${lineNo}: labels not separated by commas`);
    }
    rest = rest.slice(1);
  }
  const value = /^ (\S+)$/.exec(rest);
  if (value === null) throw new Error(`line ${lineNo}: a sample is NAME[{LABELS}] VALUE (no timestamp here): ${JSON.stringify(line)}`);
  return { name, labels, value: parseValue(value[1] ?? '', lineNo) };
}

function parseValue(text: string, lineNo: number): number {
  if (text === 'NaN') return Number.NaN;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`line ${lineNo}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** The family a sample belongs to: the open family when the name fits it, else its own name. */
function familyOf(sample: string, families: ReadonlyMap<string, { type: FamilyType | undefined }>, current: string | undefined): string {
  if (current !== undefined) {
    const type = families.get(current)?.type;
    const suffixes = type === 'histogram' ? ['_bucket', '_sum', '_count'] : type === 'summary' ? ['_sum', '_count'] : [];
    if (sample === current || suffixes.some((suffix) => sample === current + suffix)) return current;
  }
  return sample;
}

function checkSampleName(type: FamilyType, family: string, sample: PromSample, lineNo: number): void {
  const bad = (why: string): Error => new Error(`line ${lineNo}: ${sample.name} in ${type} ${family}: ${why}`);
  switch (type) {
    case 'histogram':
      if (sample.name === `${family}_bucket`) {
        if (sample.labels['le'] === undefined) throw bad('a bucket without le');
      } else if (sample.name !== `${family}_sum` && sample.name !== `${family}_count`) throw bad('not _bucket, _sum or _count');
      return;
    case 'summary':
      if (sample.name !== family && sample.name !== `${family}_sum` && sample.name !== `${family}_count`) throw bad('not a summary sample');
      return;
    default:
      if (sample.name !== family) throw bad('the sample is not named after its family');
  }
}

function checkHistogram(name: string, samples: readonly PromSample[]): void {
  const series = new Map<string, { buckets: { le: number; value: number }[]; count?: number }>();
  for (const s of samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)));
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name.endsWith('_bucket') && le !== undefined) entry.buckets.push({ le: le === '+Inf' ? Infinity : Number(le), value: s.value });
    if (s.name.endsWith('_count')) entry.count = s.value;
  }
  for (const [key, entry] of series) {
    const last = entry.buckets.at(-1);
    if (last === undefined || last.le !== Infinity) throw new Error(`histogram ${name}${key}: no le="+Inf" bucket last`);
    entry.buckets.forEach((bucket, i) => {
      const previous = entry.buckets[i - 1];
      if (previous !== undefined && (bucket.le <= previous.le || bucket.value < previous.value)) throw new Error(`histogram ${name}${key}: buckets not cumulative in le order`);
    });
    if (entry.count !== last.value) throw new Error(`histogram ${name}${key}: _count ${entry.count} differs from the +Inf bucket ${last.value}`);
  }
}

/** The value of the one sample of `family` whose labels include `labels`. @throws when not exactly one. */
export function promValue(families: ReadonlyMap<string, PromFamily>, family: string, labels: Readonly<Record<string, string>> = {}, sampleName = family): number {
  const found = families.get(family)?.samples.filter((s) => s.name === sampleName && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) ?? [];
  if (found.length !== 1) throw new Error(`${found.length} samples of ${sampleName} with ${JSON.stringify(labels)}`);
  const [one] = found;
  if (one === undefined) throw new Error('unreachable');
  return one.value;
}
