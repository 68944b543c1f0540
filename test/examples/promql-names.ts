// The metric names a PromQL expression (as a Grafana panel holds it) reads, by a small tokenizer: enough for the
// dashboard check, not a PromQL parser. A metric name is an identifier that is not a function (followed by '('),
// a keyword, a label name (inside {…} or the list of by/without/on/ignoring/group_left/group_right), a duration
// or number, a string, or a Grafana variable.

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

export function metricNames(expr: string): string[] {
  const s = expr
    // Strings first, so that no brace or bracket inside one confuses what follows.
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    // Grafana's label_values(metric, label): the second argument is a label.
    .replace(/\blabel_values\s*\(\s*([a-zA-Z_:][\w:]*)\s*,\s*[a-zA-Z_]\w*\s*\)/g, ' $1 ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ')
    .replace(/\{[^{}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)/g, ' ');
  const names = new Set<string>();
  // Identifiers, then numbers and durations (1e3, 0.99, 5m) whole, then any other character.
  for (const m of s.matchAll(/([a-zA-Z_:][\w:]*)|\d[\w.]*|[\s\S]/g)) {
    const id = m[1];
    if (id === undefined || KEYWORDS.has(id.toLowerCase())) continue;
    if (s.slice(m.index + id.length).trimStart().startsWith('(')) continue; // a function
    names.add(id);
  }
  return [...names];
}

/** Names a scrape's `# TYPE` lines declare, with the _bucket/_sum/_count series of histograms and summaries. */
export function exportedNames(exposition: string): Set<string> {
  const out = new Set<string>();
  for (const line of exposition.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (m === null) continue;
    const [, name, type] = m as unknown as [string, string, string];
    out.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) out.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) out.add(name + suffix);
  }
  return out;
}

/** Brackets balanced outside strings: catches a panel query cut or mistyped by hand. */
export function balanced(expr: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: string[] = [];
  for (const c of expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')) {
    if (c === '(' || c === '[' || c === '{') stack.push(c);
    else if (c in pairs && stack.pop() !== pairs[c]) return false;
  }
  return stack.length === 0;
}
