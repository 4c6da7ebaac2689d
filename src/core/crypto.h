/*
 * Secrets at rest: AES-256-GCM (OpenSSL EVP) under the master key
 * (security.master_key). A sealed value is
 *
 *     version (1 byte, ZNP_CRYPTO_VERSION) || nonce (12) || ciphertext || tag (16)
 *
 * with a fresh random nonce per value, so the same plaintext never seals to
 * the same bytes. The optional associated data (for example "mfa:<user id>")
 * is authenticated but not stored: a value opens only with the same
 * associated data, so a sealed column cannot be copied to another row.
 * All functions are thread-safe.
 */
#ifndef ZNP_CORE_CRYPTO_H
#define ZNP_CORE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define ZNP_CRYPTO_KEY_LEN   32
#define ZNP_CRYPTO_VERSION   1
#define ZNP_CRYPTO_NONCE_LEN 12
#define ZNP_CRYPTO_TAG_LEN   16
#define ZNP_CRYPTO_OVERHEAD  (1 + ZNP_CRYPTO_NONCE_LEN + ZNP_CRYPTO_TAG_LEN)

/*
 * Decode `text` (standard base64 with padding, surrounding whitespace
 * ignored) into a 32-byte key. Returns 0, or ZNP_E_VALIDATION_FAILED when
 * `text` is NULL, not base64 or not exactly 32 bytes long.
 */
int znp_crypto_key_decode(uint8_t key[ZNP_CRYPTO_KEY_LEN], const char *text);

/*
 * Encrypt `len` bytes of `plain` into `out` (out_size must be at least
 * len + ZNP_CRYPTO_OVERHEAD) and set *out_len. `aad` may be NULL when
 * aad_len is 0. Returns 0, or ZNP_E_INTERNAL when `out` is too small or
 * OpenSSL fails (no random bytes, for example).
 */
int znp_crypto_seal(uint8_t *out, size_t out_size, size_t *out_len, const uint8_t key[ZNP_CRYPTO_KEY_LEN],
                    const void *plain, size_t len, const void *aad, size_t aad_len);

/*
 * Decrypt a value made by znp_crypto_seal into `out` (out_size at least
 * len - ZNP_CRYPTO_OVERHEAD) and set *out_len. Returns 0, or
 * ZNP_E_INTERNAL when the value is too short, has another version, was
 * changed, or was sealed under another key or associated data. Nothing of a
 * value that fails the tag check is left in `out`.
 */
int znp_crypto_open(uint8_t *out, size_t out_size, size_t *out_len, const uint8_t key[ZNP_CRYPTO_KEY_LEN],
                    const uint8_t *sealed, size_t len, const void *aad, size_t aad_len);

#endif
