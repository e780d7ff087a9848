/** The strict Prometheus text parser the metrics tests rely on: it must refuse what a scraper could misread. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePrometheusText, promValue } from '../helpers/prom-text.js';

const good = `# HELP a_total A counter.
# TYPE a_total counter
a_total{x="1"} 3
a_total{x="q\\"\\\\\\n"} 0

# TYPE h histogram
h_bucket{le="0.1"} 1
h_bucket{le="+Inf"} 2
h_sum 0.3
h_count 2
# TYPE g gauge
g NaN
`;

test('parsePrometheusText reads families, labels with escapes, histograms', () => {
  const families = parsePrometheusText(good);
  assert.deepEqual([...families.keys()], ['a_total', 'h', 'g']);
  assert.equal(families.get('a_total')?.help, 'A counter.');
  assert.equal(promValue(families, 'a_total', { x: 'q"\\\n' }), 0);
  assert.equal(promValue(families, 'h', { le: '+Inf' }, 'h_bucket'), 2);
  assert.ok(Number.isNaN(promValue(families, 'g')));
});

test('parsePrometheusText refuses what a scraper could misread', () => {
  const bad: readonly [string, string][] = [
    ['no final new line', '# TYPE g gauge\ng 1'],
    ['no TYPE', 'g 1\n'],
    ['TYPE after a sample', '# TYPE g gauge\ng 1\n# HELP g late\n'],
    ['a family reopened', '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="1"} 2\n'],
    ['a duplicate sample', '# TYPE g gauge\ng{a="1",b="2"} 1\ng{b="2",a="1"} 2\n'],
    ['a negative counter', '# TYPE c_total counter\nc_total -1\n'],
    ['a bad value', '# TYPE g gauge\ng 1,5\n'],
    ['a timestamp', '# TYPE g gauge\ng 1 1700000000\n'],
    ['a bad escape', '# TYPE g gauge\ng{a="\\t"} 1\n'],
    ['a missing comma', '# TYPE g gauge\ng{a="1" b="2"} 1\n'],
    ['a foreign sample in a histogram', '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_max 3\n'],
    ['buckets that shrink', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
    ['no +Inf bucket', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_count 2\n'],
    ['_count other than +Inf', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 3\n'],
    ['an unknown type', '# TYPE g gauges\ng 1\n'],
    ['a reserved label', '# TYPE g gauge\ng{__name__="x"} 1\n'],
  ];
  for (const [why, text] of bad) assert.throws(() => parsePrometheusText(text), Error, why);
});
