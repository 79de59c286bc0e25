//! The byte stream of one control connection: buffering, the clear prefix, and the encrypted,
//! HMAC-protected part after it (RFC 4656 3.1, 3.2).
//!
//! Messages are read in pieces as their length becomes known: [`Stream::take_body`] decrypts
//! blocks and adds them to the running HMAC, [`Stream::take_hmac`] decrypts an HMAC field and
//! checks it. On the sending side [`Stream::send_sealed`] takes a whole message whose last 16
//! octets are its HMAC field. Encryption and HMAC are no-ops in open mode (HMAC fields zero,
//! not checked), as in the reference implementation.

use crate::crypto::{ControlOpener, ControlSealer, CryptoError, BLOCK_LEN};

/// Received octets not yet consumed, and octets waiting to be sent, with the ciphers of both
/// directions.
#[derive(Debug)]
pub(crate) struct Stream {
    rx: Vec<u8>,
    rx_start: usize,
    tx: Vec<u8>,
    sealer: ControlSealer,
    opener: ControlOpener,
}

impl Stream {
    /// A stream in the clear (until [`set_sealer`](Self::set_sealer) /
    /// [`set_opener`](Self::set_opener)).
    pub(crate) fn new() -> Self {
        Self {
            rx: Vec::new(),
            rx_start: 0,
            tx: Vec::new(),
            sealer: ControlSealer::unauthenticated(),
            opener: ControlOpener::unauthenticated(),
        }
    }

    pub(crate) fn set_sealer(&mut self, sealer: ControlSealer) {
        self.sealer = sealer;
    }

    pub(crate) fn set_opener(&mut self, opener: ControlOpener) {
        self.opener = opener;
    }

    /// Appends received octets.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.rx_start > 0 && self.rx_start * 2 >= self.rx.len() {
            self.rx.drain(..self.rx_start);
            self.rx_start = 0;
        }
        self.rx.extend_from_slice(bytes);
    }

    /// Octets received and not consumed.
    pub(crate) fn available(&self) -> usize {
        self.rx.len() - self.rx_start
    }

    /// The first received octet not consumed, if any (still encrypted in secure modes).
    fn take_raw(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.available() < n {
            return None;
        }
        let out = self.rx[self.rx_start..self.rx_start + n].to_vec();
        self.rx_start += n;
        Some(out)
    }

    /// Takes `n` octets sent in the clear (the set-up messages).
    pub(crate) fn take_clear(&mut self, n: usize) -> Option<Vec<u8>> {
        self.take_raw(n)
    }

    /// Takes `n` octets (whole blocks) of a message body: decrypted and added to the HMAC.
    pub(crate) fn take_body(&mut self, n: usize) -> Option<Result<Vec<u8>, CryptoError>> {
        let mut buf = self.take_raw(n)?;
        Some(self.opener.update(&mut buf).map(|()| buf))
    }

    /// Takes a 16-octet HMAC field and checks it against everything added since the last one;
    /// returns the field as received (decrypted).
    pub(crate) fn take_hmac(&mut self) -> Option<Result<Vec<u8>, CryptoError>> {
        let mut buf = self.take_raw(BLOCK_LEN)?;
        Some(self.opener.open(&mut buf).map(|()| buf))
    }

    /// Queues octets in the clear.
    pub(crate) fn send_clear(&mut self, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
    }

    /// Queues whole blocks that are encrypted and added to the HMAC without ending it.
    pub(crate) fn send_update(&mut self, mut blocks: Vec<u8>) -> Result<(), CryptoError> {
        self.sealer.update(&mut blocks)?;
        self.tx.extend_from_slice(&blocks);
        Ok(())
    }

    /// Queues a message (or its tail) whose last 16 octets are its HMAC field.
    pub(crate) fn send_sealed(&mut self, mut msg: Vec<u8>) -> Result<(), CryptoError> {
        self.sealer.seal(&mut msg)?;
        self.tx.extend_from_slice(&msg);
        Ok(())
    }

    /// The octets queued since the last call, if any.
    pub(crate) fn take_tx(&mut self) -> Option<Vec<u8>> {
        if self.tx.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.tx))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_in_order_across_pushes_and_compaction() {
        let mut s = Stream::new();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for chunk in data.chunks(7) {
            s.push(chunk);
        }
        let mut got = Vec::new();
        while let Some(b) = s.take_body(16) {
            got.extend(b.unwrap());
            // Interleave pushes so the buffer compacts while partly consumed.
            s.push(&[]);
        }
        assert_eq!(got, data[..992]);
        assert_eq!(s.available(), 8);
        assert!(s.take_hmac().is_none());
        assert_eq!(s.take_clear(8).unwrap(), data[992..]);
    }

    #[test]
    fn open_mode_writes_zero_hmac_fields() {
        let mut s = Stream::new();
        s.send_sealed(vec![0xab; 32]).unwrap();
        let tx = s.take_tx().unwrap();
        assert_eq!(&tx[..16], &[0xab; 16]);
        assert_eq!(&tx[16..], &[0; 16]);
        assert!(s.take_tx().is_none());
    }
}
