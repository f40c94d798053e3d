import ipaddr from 'ipaddr.js';

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const CANONICAL_IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);

/**
 * The canonical text of an IP address, so that two spellings of one address mask alike:
 * IPv4 in dotted decimal, IPv6 in RFC 5952 form, IPv4-mapped IPv6 as plain IPv4.
 * Returns undefined for anything that is not a standard IPv4 or IPv6 address; ambiguous
 * legacy forms (`0x7f.1`, `010.1.1.1`, `1.2.3`) and zone ids are refused, not guessed at.
 */
export function canonicalIp(text: string): string | undefined {
  // Most addresses already are canonical dotted decimal (each part 0-255, no leading zero):
  // those are their own answer, with no parse.
  if (CANONICAL_IPV4.test(text)) return text;
  // A cheap shape check first: the parser throws (slowly) on everything it refuses, and an
  // event's ip can be any string up to the size of a message.
  if (text.length > 45 || !(/^[0-9.]+$/.test(text) || /:.*:/.test(text))) return undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text).toString();
  if (text.includes('%') || !ipaddr.IPv6.isValid(text)) return undefined;
  const address = ipaddr.process(text);
  return address.kind() === 'ipv4' ? address.toString() : (address as ipaddr.IPv6).toRFC5952String();
}
