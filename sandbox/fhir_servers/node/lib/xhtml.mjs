// txt-1 and txt-2 (Narrative.div, FHIRPath "htmlChecks()"): Medplum's htmlChecks() always answers
// true, so the narrative is checked here as HAPI's validator checks it: well-formed XHTML, a <div>
// root in the XHTML namespace, only the basic formatting elements, no event attributes or
// javascript: links (txt-1), and some non-whitespace content or an image (txt-2). Attributes other
// than on* are not checked (HAPI's list of allowed attributes is longer than worth mirroring).

/** The elements HAPI's validator allows in a narrative. */
const ALLOWED = new Set(
  (
    'p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt dfn q var abbr acronym cite blockquote hr ' +
    'address bdo kbd sub sup ul ol li dl dt dd pre table caption colgroup col thead tr tfoot tbody th td code ' +
    'samp img map area'
  ).split(' '),
);
const XHTML = 'http://www.w3.org/1999/xhtml';
const TOKEN =
  /<!--[\s\S]*?-->|<!\[CDATA\[([\s\S]*?)\]\]>|<(\/?)([A-Za-z][\w:.-]*)((?:\s+[^\s=/>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*)\s*(\/?)>|<|[^<]+/g;
const ATTRIBUTE = /([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g;

/** { txt1: [problems], txt2: true when there is no content } for the XHTML text of a Narrative.div. */
export function narrativeProblems(div) {
  const txt1 = [];
  let content = false;
  const open = [];
  let root;
  for (const match of div.matchAll(TOKEN)) {
    const [token, cdata, closing, name, attributes = '', selfClosing] = match;
    if (token.startsWith('<!--')) continue;
    if (cdata !== undefined) {
      if (open.length && cdata.trim()) content = true;
      continue;
    }
    if (name === undefined) {
      if (token === '<') txt1.push('Malformed XHTML: a "<" that starts no element');
      else if (!open.length && token.trim()) txt1.push('Malformed XHTML: text outside the root <div>');
      else if (decode(token).trim()) content = true;
      continue;
    }
    const local = name.toLowerCase();
    if (closing) {
      const expected = open.pop();
      if (expected !== name) {
        txt1.push(`Malformed XHTML: found "</${name}>" expecting ${expected ? `"</${expected}>"` : 'nothing'}`);
        return { txt1, txt2: false };
      }
      continue;
    }
    if (!root) {
      root = name;
      if (local !== 'div') txt1.push(`Wrong name on the XHTML ('${name}') - must start with div`);
      const namespace = attributeValues(attributes).get('xmlns');
      if (namespace !== XHTML)
        txt1.push(`Wrong namespace on the XHTML ('${namespace ?? 'null'}', should be '${XHTML}')`);
    } else if (!open.length) {
      txt1.push('Malformed XHTML: more than one root element');
    }
    if (!ALLOWED.has(local)) txt1.push(`Invalid element name in the XHTML ('${name}')`);
    for (const [attribute, value] of attributeValues(attributes)) {
      if (/^on/i.test(attribute)) txt1.push(`Invalid attribute name in the XHTML ('${attribute}' on '${name}')`);
      if ((attribute === 'href' || attribute === 'src') && /^\s*javascript:/i.test(value ?? '')) {
        txt1.push(`Hyperlink scheme 'javascript' in '${value}' has active content, which is not allowed`);
      }
    }
    if (local === 'img') content = true;
    if (!selfClosing) open.push(name);
  }
  if (!root) txt1.push('Malformed XHTML: no root element');
  else if (open.length) txt1.push(`Malformed XHTML: "<${open.at(-1)}>" is not closed`);
  return { txt1, txt2: !content };
}

function attributeValues(text) {
  const values = new Map();
  for (const [, name, double, single, bare] of text.matchAll(ATTRIBUTE)) values.set(name, double ?? single ?? bare);
  return values;
}

const decode = (text) => text.replace(/&(nbsp|#160|#xa0);/gi, ' ').replace(/&(#x?[0-9a-f]+|[a-z]+);/gi, 'x'); // an entity is content
