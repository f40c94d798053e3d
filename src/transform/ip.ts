import ipaddr from 'ipaddr.js';

/**
 * The canonical text of an IP address, so that two spellings of one address mask alike:
 * IPv4 in dotted decimal, IPv6 in RFC 5952 form, IPv4-mapped IPv6 as plain IPv4.
 * Returns undefined for anything that is not a standard IPv4 or IPv6 address; ambiguous
 * legacy forms (`0x7f.1`, `010.1.1.1`, `1.2.3`) and zone ids are refused, not guessed at.
 */
export function canonicalIp(text: string): string | undefined {
  // A cheap shape check first: the parser throws (slowly) on everything it refuses, and masking
  // scans free text with this function.
  if (text.length > 45 || !(/^[0-9.]+$/.test(text) || /:.*:/.test(text))) return undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text).toString();
  if (text.includes('%') || !ipaddr.IPv6.isValid(text)) return undefined;
  const address = ipaddr.process(text);
  return address.kind() === 'ipv4' ? address.toString() : (address as ipaddr.IPv6).toRFC5952String();
}
