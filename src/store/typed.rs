//! Typed spines: a key-value spine whose keys are a [`Key`] type, stored in
//! an encoding whose byte order is the keys' order, and whose values are
//! rkyv archives of `V`, read in place and validated on every read.

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Bound;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Archived, Portable, Serialize};

use super::shard::{KvSpine, Lsn, Shard};
use crate::spine::Cursor;
use crate::{Error, Result};

/// A key type with an order-preserving byte encoding: for any two keys,
/// the encodings compare as bytes the way the keys compare as values, so a
/// spine's key order is the type's order.
///
/// Unsigned integers are big-endian; signed ones big-endian with the sign
/// bit flipped (so negatives sort first); byte strings and strings are
/// their bytes. In a tuple every part but the last must not be a prefix of
/// another key's: [`Key::encode_nested`] escapes variable-length parts
/// (`0x00` as `0x00 0xFF`, then `0x00 0x00` to end).
pub trait Key {
    /// Appends the key's encoding to `out`, as the last (or only) part of
    /// a key.
    fn encode_key(&self, out: &mut Vec<u8>);

    /// Appends the key's encoding as a part followed by others: no
    /// encoding of this type may be a prefix of another. Fixed-width
    /// encodings are already.
    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.encode_key(out);
    }
}

/// Appends `bytes` so that no result is a prefix of another and the order
/// stays that of the bytes.
fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

impl Key for [u8] {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        escape(self, out);
    }
}

impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.as_slice().encode_key(out);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.as_slice().encode_nested(out);
    }
}

impl Key for str {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.as_bytes().encode_key(out);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.as_bytes().encode_nested(out);
    }
}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.as_str().encode_key(out);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.as_str().encode_nested(out);
    }
}

impl<T: Key + ?Sized> Key for &T {
    fn encode_key(&self, out: &mut Vec<u8>) {
        (**self).encode_key(out);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        (**self).encode_nested(out);
    }
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
    )*};
}

macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                // Flipping the sign bit maps MIN..=MAX onto 0..=MAX of the
                // unsigned type, in order.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
        }
    )*};
}

unsigned_key!(u8, u16, u32, u64, u128);
signed_key!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl<A: Key, B: Key> Key for (A, B) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_key(out);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_nested(out);
    }
}

impl<A: Key, B: Key, C: Key> Key for (A, B, C) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_nested(out);
        self.2.encode_key(out);
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_nested(out);
        self.2.encode_nested(out);
    }
}

/// The encoding of `key` ([`Key`]), as a new vector.
pub fn encode_key<K: Key + ?Sized>(key: &K) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_key(&mut out);
    out
}

/// A value type of a typed spine: any rkyv-serializable type whose archive
/// can be validated.
pub trait Value:
    Archive<Archived: Portable + for<'b> CheckBytes<HighValidator<'b, rancor::Error>>>
    + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

impl<V> Value for V where
    V: Archive<Archived: Portable + for<'b> CheckBytes<HighValidator<'b, rancor::Error>>>
        + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// A key-value spine typed by key and value (redb's `TableDefinition<K,
/// V>` shape): [`Shard::put_typed`], [`Shard::get_typed`],
/// [`Shard::delete_typed`]. A copy handle like [`KvSpine`]; the types are
/// the caller's promise, checked on every read (a value that is not a valid
/// archive of `V` is an error, never undefined behaviour).
///
/// ```
/// # use std::sync::Arc;
/// # use statespine::io::MemFs;
/// # use statespine::store::Options;
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Account {
///     owner: String,
///     balance: i64,
/// }
///
/// let mut store = Options::new("/db").fs(Arc::new(MemFs::new())).open()?;
/// let mut shard = store.take_shards().remove(0);
/// let accounts = shard.create_typed::<(u32, i64), Account>("accounts")?;
/// let ann = Account { owner: "ann".into(), balance: -12 };
/// shard.put_typed(accounts, &(7, -3), &ann)?;
/// let got = shard.get_typed(accounts, &(7, -3))?.unwrap();
/// assert_eq!((got.owner.as_str(), got.balance.to_native()), ("ann", -12));
/// assert!(shard.get_typed(accounts, &(7, 3))?.is_none());
/// // The same spine, typed again by name.
/// assert_eq!(shard.typed::<(u32, i64), Account>("accounts"), Some(accounts));
/// # Ok::<(), statespine::Error>(())
/// ```
pub struct TypedSpine<K: ?Sized, V> {
    kv: KvSpine,
    types: PhantomData<fn(&K, &V)>,
}

impl<K: ?Sized, V> TypedSpine<K, V> {
    /// The untyped key-value handle (for cursors and batches).
    pub fn kv(self) -> KvSpine {
        self.kv
    }
}

impl<K: ?Sized, V> Clone for TypedSpine<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: ?Sized, V> Copy for TypedSpine<K, V> {}

impl<K: ?Sized, V> PartialEq for TypedSpine<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.kv == other.kv
    }
}

impl<K: ?Sized, V> Eq for TypedSpine<K, V> {}

impl<K: ?Sized, V> Hash for TypedSpine<K, V> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kv.hash(state);
    }
}

impl<K: ?Sized, V> fmt::Debug for TypedSpine<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TypedSpine").field(&self.kv).finish()
    }
}

/// The buffers typed writes and reads encode into, kept by the shard so
/// that a warm put allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct TypedScratch {
    key: Vec<u8>,
    value: AlignedVec,
    /// For reads, which take the shard shared.
    read_key: RefCell<Vec<u8>>,
}

impl Shard {
    /// Creates the key-value spine `name` typed by `K` and `V`, or returns
    /// the existing one (which must be key-value).
    pub fn create_typed<K: Key + ?Sized, V: Value>(&mut self, name: &str) -> Result<TypedSpine<K, V>> {
        Ok(TypedSpine {
            kv: self.create_kv(name)?,
            types: PhantomData,
        })
    }

    /// The key-value spine `name` typed by `K` and `V`, if it exists.
    pub fn typed<K: Key + ?Sized, V: Value>(&self, name: &str) -> Option<TypedSpine<K, V>> {
        self.kv_spine(name).map(|kv| TypedSpine {
            kv,
            types: PhantomData,
        })
    }

    /// Sets `key` to `value`, serialized with rkyv into the shard's buffer
    /// (no allocation once it is as large as the largest value).
    pub fn put_typed<K: Key + ?Sized, V: Value>(
        &mut self,
        h: TypedSpine<K, V>,
        key: &K,
        value: &V,
    ) -> Result<Lsn> {
        let mut s = std::mem::take(self.typed_scratch());
        s.key.clear();
        key.encode_key(&mut s.key);
        s.value.clear();
        let written =
            match rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, std::mem::take(&mut s.value)) {
                Ok(bytes) => {
                    s.value = bytes;
                    self.put(h.kv, &s.key, &s.value)
                }
                Err(e) => Err(Error::InvalidArgument(format!(
                    "the value does not serialize: {e}"
                ))),
            };
        *self.typed_scratch() = s;
        written
    }

    /// Deletes `key`.
    pub fn delete_typed<K: Key + ?Sized, V: Value>(&mut self, h: TypedSpine<K, V>, key: &K) -> Result<Lsn> {
        let mut s = std::mem::take(self.typed_scratch());
        s.key.clear();
        key.encode_key(&mut s.key);
        let deleted = self.delete(h.kv, &s.key);
        *self.typed_scratch() = s;
        deleted
    }

    /// The archived value of `key`, borrowed from the memtable or the
    /// mapped run, validated on every call.
    pub fn get_typed<K: Key + ?Sized, V: Value>(
        &self,
        h: TypedSpine<K, V>,
        key: &K,
    ) -> Result<Option<&Archived<V>>> {
        let spine = self.spine(h.kv)?;
        let mut buf = self.typed_scratch_ref().read_key.borrow_mut();
        buf.clear();
        key.encode_key(&mut buf);
        spine.get_archived::<Archived<V>>(&buf)
    }
}

/// The entries of a typed spine in key order ([`Shard::range_typed`]):
/// each key's encoding ([`Key`]) and its archived value, validated as it
/// comes.
#[derive(Debug)]
pub struct TypedCursor<'a, V> {
    inner: Cursor<'a>,
    value: PhantomData<fn() -> V>,
}

impl<'a, V: Value> Iterator for TypedCursor<'a, V>
where
    Archived<V>: 'a,
{
    type Item = Result<(&'a [u8], &'a Archived<V>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let e = match self.inner.next()? {
            Ok(e) => e,
            Err(err) => return Some(Err(err)),
        };
        Some(
            rkyv::access::<Archived<V>, rancor::Error>(e.value)
                .map(|v| (e.key, v))
                .map_err(|err| {
                    Error::InvalidArgument(format!("the value of a key is not a valid archive: {err}"))
                }),
        )
    }
}

/// A bound on keys as a bound on their encodings.
fn encode_bound<K: Key + ?Sized>(b: Bound<&K>) -> Bound<Vec<u8>> {
    b.map(|k| encode_key(k))
}

impl Shard {
    /// The entries of a typed spine whose keys lie between `from` and `to`,
    /// in key order (the encodings sort as the keys do).
    pub fn range_typed<K: Key + ?Sized, V: Value>(
        &self,
        h: TypedSpine<K, V>,
        from: Bound<&K>,
        to: Bound<&K>,
    ) -> Result<TypedCursor<'_, V>> {
        let (from, to) = (encode_bound(from), encode_bound(to));
        let inner = self.range(
            h.kv,
            (from.as_ref().map(Vec::as_slice), to.as_ref().map(Vec::as_slice)),
        )?;
        Ok(TypedCursor {
            inner,
            value: PhantomData,
        })
    }
}
