//! The gRPC codec of every generated service and client: tonic-prost's `ProstCodec`, except
//! that bytes which do not decode as the expected message are `INVALID_ARGUMENT`.
//!
//! tonic-prost answers a `prost::DecodeError` with `INTERNAL`, and phones retry `INTERNAL`
//! forever (docs/sync-protocol.md §9): the same bytes would be sent, and refused, until the
//! app is reinstalled. Undecodable bytes are the sender's fault and never change on a retry,
//! so they get the non-retryable status the protocol promises for malformed requests.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Prefix of the status message for bytes that do not decode, so logs and tests can tell it
/// from a field-level `INVALID_ARGUMENT`.
pub const UNDECODABLE_MESSAGE: &str = "message does not decode as protobuf";

/// `ProstCodec` with decode errors mapped to `INVALID_ARGUMENT` (see the module docs).
#[derive(Debug, Clone)]
pub struct WireCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for WireCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for WireCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = WireDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder {
            inner: ProstCodec::<T, U>::raw_decoder(BufferSettings::default()),
        }
    }
}

/// tonic-prost's decoder, with its `INTERNAL` for undecodable bytes turned into
/// `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct WireDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default> Decoder for WireDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        // The only error the prost decoder returns is a decode error; it carries no other
        // cause, so every error here is the sender's bytes.
        self.inner.decode(buf).map_err(|status| {
            Status::invalid_argument(format!("{UNDECODABLE_MESSAGE}: {}", status.message()))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
