/**
 * Sealed boxes (libsodium's crypto_box_seal: X25519 + XSalsa20-Poly1305 with an ephemeral
 * sender key): anyone with the public key can seal, only the holder of the private key can open.
 * libsodium is loaded on first use, so commands that never seal do not pay for its WebAssembly.
 */
export interface SealedBox {
  seal(message: Uint8Array, publicKey: Uint8Array): Uint8Array;
  /** Throws when the box was not sealed for this key pair or was altered. */
  open(sealed: Uint8Array, publicKey: Uint8Array, privateKey: Uint8Array): Uint8Array;
}

let loading: Promise<SealedBox> | undefined;

export function loadSealedBox(): Promise<SealedBox> {
  loading ??= (async () => {
    const { default: sodium } = await import('libsodium-wrappers');
    await sodium.ready;
    return {
      seal: (message, publicKey) => sodium.crypto_box_seal(message, publicKey),
      open: (sealed, publicKey, privateKey) => sodium.crypto_box_seal_open(sealed, publicKey, privateKey),
    };
  })();
  return loading;
}
