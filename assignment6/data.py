"""text8 and the course's data helpers (6_lstm.ipynb, the cells before the model).

The course's names and behaviour are kept: `maybe_download`, `read_data`, `char2id`,
`id2char`, `BatchGenerator(...).next()`, `characters`, `batches2string`, `logprob`,
`sample_distribution`, `sample`, `random_distribution`. The course fills its one-hot arrays
character by character; here the text is turned into ids once and batches are cut with
NumPy indexing, giving the same arrays (tests compare with a character-by-character twin,
`assignment6.course_tf1`).

Bigram helpers (Problem 2) follow the character ones: a bigram is a pair of characters,
id `27 * first + second`, one of `bigram_vocabulary_size = 729`.
"""
import lzma
import os
import random
import string
import urllib.request
import zipfile

import numpy as np

url = 'http://mattmahoney.net/dc/'
TEXT8_BYTES = 31344016  # the size of text8.zip the course verifies
SAMPLE_ZIP = os.path.join(os.path.dirname(__file__), 'data', 'text8_sample.zip')
SAMPLE_DESCRIPTION = ('the embedded text8 sample: the first 5,000,000 characters of a '
                      'text8-like Wikipedia corpus (CC BY-SA 3.0)')

vocabulary_size = len(string.ascii_lowercase) + 1  # [a-z] + ' '
first_letter = ord(string.ascii_lowercase[0])
bigram_vocabulary_size = vocabulary_size * vocabulary_size  # 729 pairs


class DataError(ValueError):
  """A user's data problem, reported as one line that names the file and what to do."""


# ---------------------------------------------------------------------------- download

def maybe_download(filename='text8.zip', expected_bytes=TEXT8_BYTES, source=url):
  """Download `filename` from the course's URL if absent; verify its size (the course's).

  Downloads into `filename + '.part'` and renames only a verified file, so a failed or
  interrupted download never leaves a bad `filename` behind.
  """
  if not os.path.exists(filename):
    partial = filename + '.part'
    try:
      urllib.request.urlretrieve(source + os.path.basename(filename), partial)
    except OSError as error:
      raise DataError('%s: download from %s failed (%s); get it with text8_download.sh '
                      'or a browser' % (filename, source, error)) from None
    if os.stat(partial).st_size != expected_bytes:
      os.remove(partial)
      raise DataError('%s: the download is not %d bytes; try again later or use '
                      'text8_download.sh' % (filename, expected_bytes))
    os.replace(partial, filename)
  size = os.stat(filename).st_size
  if size != expected_bytes:
    raise DataError('Failed to verify %s: %d bytes, expected %d. Can you get to it with a '
                    'browser? (move the file away and run text8_download.sh)'
                    % (filename, size, expected_bytes))
  print('Found and verified %s' % filename)
  return filename


# ---------------------------------------------------------------------------- reading

def read_data(filename):
  """The text of a text8 file: `text8.zip` (its first member), a `.xz` file, or plain text.

  Every problem with the file is a `DataError` naming it.
  """
  if not os.path.isfile(filename):
    raise DataError('%s: no such file; give --data a text8.zip or text file, or run '
                    'text8_download.sh' % filename)
  try:
    if zipfile.is_zipfile(filename):
      with zipfile.ZipFile(filename) as f:
        names = f.namelist()
        if not names:
          raise DataError('%s: the zip holds no file; text8.zip holds one member, text8 '
                          '(download it again with text8_download.sh)' % filename)
        raw = f.read(names[0])
    elif filename.endswith('.xz'):
      with lzma.open(filename) as f:
        raw = f.read()
    elif filename.endswith('.zip'):
      raise DataError('%s: not a valid zip file (truncated or corrupt); delete it and run '
                      'text8_download.sh' % filename)
    else:
      with open(filename, 'rb') as f:
        raw = f.read()
  except (zipfile.BadZipFile, lzma.LZMAError, EOFError, OSError) as error:
    raise DataError('%s: cannot be read (%s); delete it and download or make it again'
                    % (filename, str(error).split('\n')[0])) from None
  if not raw:
    raise DataError('%s: the text is empty; give a text8-format file (a-z and spaces)'
                    % filename)
  return raw.decode('utf-8', errors='replace')


def corpus_path(data):
  """The corpus a script reads: `data` if given, else ./text8.zip if present, else None.

  None means the embedded sample (`SAMPLE_ZIP`).
  """
  if data:
    return data
  if os.path.exists('text8.zip'):
    return 'text8.zip'
  return None


def load_corpus(data=None, strict=False, print_fn=print, vocabulary='text8'):
  """Read the corpus a script uses and say in one line which it is.

  Characters outside a-z and space become spaces, as in the course (`char2id`); their count
  is reported once, and `strict=True` refuses such a text. A text mostly outside the
  alphabet is refused (`check_alphabet`). vocabulary='auto' (`--vocabulary=auto`): the
  model will read every character of the text (`Vocabulary.from_text`), none is mapped.
  """
  path = corpus_path(data)
  text = read_data(path or SAMPLE_ZIP)
  if vocabulary == 'auto':
    print_fn('Corpus: %s (%d characters).' % (path or SAMPLE_DESCRIPTION, len(text)))
    return text
  unexpected = text_to_ids(text)[1]
  if unexpected and strict:
    raise DataError('%s: %d characters outside a-z and space (--strict); clean the text '
                    'or drop --strict to map them to spaces as the course does'
                    % (path, unexpected))
  check_alphabet(path or SAMPLE_ZIP, text, unexpected)
  if path is None:
    print_fn('Corpus: %s. For the course\'s text8, run `bash text8_download.sh` here '
             'or pass --data=PATH/text8.zip.' % SAMPLE_DESCRIPTION)
  else:
    print_fn('Corpus: %s (%d characters).' % (path, len(text)))
  if unexpected:
    print_fn('Unexpected characters: %d mapped to spaces (as char2id does); --strict '
             'refuses them.' % unexpected)
  return text


def check_alphabet(name, text, unexpected=None):
  """Refuse a text mostly outside text8's alphabet: the wrong file (a .gz, a PDF, capitals).

  The course maps such characters to spaces; a text that is more than half of them would
  train on spaces. name: the file, for the message; unexpected: their count, if known.
  """
  if unexpected is None:
    unexpected = text_to_ids(text)[1]
  if unexpected * 2 > len(text):
    raise DataError('%s: %d of its %d characters are outside a-z and space; is it a '
                    'text8-format text (lower-case letters and spaces; a compressed file '
                    'other than .zip or .xz is not read)?' % (name, unexpected, len(text)))


# ---------------------------------------------------------------------------- characters

def char2id(char):
  """The course's id of a character: 'a'..'z' -> 1..26, space and anything else -> 0."""
  if char in string.ascii_lowercase:
    return ord(char) - first_letter + 1
  elif char == ' ':
    return 0
  else:
    print('Unexpected character: %s' % char)
    return 0


def id2char(dictid):
  """The course's character of an id: 1..26 -> 'a'..'z', 0 -> space."""
  if dictid > 0:
    return chr(dictid + first_letter - 1)
  else:
    return ' '


_ASCII_IDS = np.zeros(128, dtype=np.uint8)  # char2id for every ASCII code at once
_ASCII_IDS[first_letter:first_letter + 26] = np.arange(1, 27)


def text_to_ids(text):
  """`char2id` over a whole text, without printing: (ids (len,) uint8, unexpected count)."""
  if text.isascii():
    codes = np.frombuffer(text.encode('ascii'), dtype=np.uint8)
    ids = _ASCII_IDS[codes]
  else:
    codes = np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32)
    letter = (codes >= first_letter) & (codes < first_letter + 26)
    ids = np.where(letter, codes - first_letter + 1, 0).astype(np.uint8)
  unexpected = int(np.count_nonzero((ids == 0) & (codes != ord(' '))))
  return ids, unexpected


def ids_to_text(ids):
  """The characters of an array of ids, as one string."""
  return ''.join(id2char(int(i)) for i in np.ravel(ids))


def one_hot(ids, depth=vocabulary_size):
  """NumPy one-hot float32 rows: ids (...) -> (..., depth)."""
  return np.eye(depth, dtype=np.float32)[np.asarray(ids)]


# ---------------------------------------------------------------------------- vocabularies

TEXT8_CHARACTERS = ' ' + string.ascii_lowercase  # char2id's order: ' ' 0, 'a'..'z' 1..26
MAX_BIGRAM_BYTES = 2**30  # the largest bigram one-hot table accepted (float32, V^2 x V^2)


class Vocabulary(object):
  """The characters a model reads and writes; a character's id is its place in them.

  text8's (the default): space and a-z, the course's `char2id` ids (also their sorted
  order). `from_text` (`--vocabulary=auto`): every character of a training text, sorted by
  code point, so any UTF-8 text can be learnt. A character outside the vocabulary gets id
  0, as `char2id` maps it to a space, and is counted (`ids`).
  """

  def __init__(self, characters=TEXT8_CHARACTERS):
    if not characters or list(characters) != sorted(set(characters)):
      raise DataError('a vocabulary is distinct characters in sorted order, not %r'
                      % characters[:40])
    self.characters = characters
    self.codes = np.array([ord(c) for c in characters], dtype=np.int64)  # (V,) sorted

  @classmethod
  def from_text(cls, text):
    return cls(''.join(sorted(set(text))))

  @property
  def size(self):
    return len(self.characters)

  @property
  def is_text8(self):
    return self.characters == TEXT8_CHARACTERS

  def ids(self, text):
    """A text's ids: (ids (len,) integers, count of characters outside the vocabulary)."""
    if self.is_text8:
      return text_to_ids(text)
    codes = np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32).astype(np.int64)
    places = np.minimum(np.searchsorted(self.codes, codes), self.size - 1)
    known = self.codes[places] == codes
    return np.where(known, places, 0).astype(np.int32), int(np.count_nonzero(~known))

  def unknown(self, text):
    """The characters of `text` outside the vocabulary, sorted, as one string."""
    return ''.join(sorted(set(text) - set(self.characters)))

  def text(self, ids):
    """The characters of an array of ids, as one string."""
    return ''.join(self.characters[int(i)] for i in np.ravel(ids))

  def bigram_text(self, ids, stride=2):
    """The characters of a sequence of bigram ids `size * first + second` cut with
    `stride` (`bigram_text` for text8's)."""
    pairs = [self.characters[int(i) // self.size] + self.characters[int(i) % self.size]
             for i in np.ravel(ids)]
    if stride == 1:
      return pairs[0][:1] + ''.join(pair[1] for pair in pairs) if pairs else ''
    return ''.join(pairs)

  def check_bigrams(self, limit=MAX_BIGRAM_BYTES):
    """Refuse a vocabulary whose bigram one-hot table, (V^2, V^2) float32, exceeds
    `limit` bytes (the labels are rows of it: `models.one_hot`)."""
    pairs = self.size * self.size
    if pairs * pairs * 4 > limit:
      raise DataError('--vocabulary=auto: the text has %d distinct characters, so %d '
                      'bigrams, whose one-hot table (%.1f GB) would not fit in memory; use '
                      '--variant=embedding, or a text with at most %d distinct characters'
                      % (self.size, pairs, pairs * pairs * 4 / 1e9,
                         int((limit / 4) ** 0.25)))


TEXT8 = Vocabulary()


class BatchGenerator(object):
  """The course's batches: `batch_size` cursors spaced `len(text) // batch_size` apart.

  `next()` returns `num_unrollings + 1` one-hot arrays of shape (batch_size, 27): the last
  array of the previous call, then `num_unrollings` new ones. `next_ids()` is the same as
  integer ids, (num_unrollings + 1, batch_size), which the TensorFlow code takes.
  """

  def __init__(self, text, batch_size, num_unrollings):
    self._ids = text if isinstance(text, np.ndarray) else text_to_ids(text)[0]
    self._text_size = len(self._ids)
    if self._text_size < batch_size:
      raise DataError('the text (%d characters) is shorter than the batch size (%d): use '
                      'a longer text or a smaller --batch_size'
                      % (self._text_size, batch_size))
    self._batch_size = batch_size
    self._num_unrollings = num_unrollings
    segment = self._text_size // batch_size
    self._cursor = np.arange(batch_size, dtype=np.int64) * segment  # (batch_size,)
    self._last_ids = self._take(1)[0]  # (batch_size,)

  def _take(self, count):
    """The next `count` characters at every cursor, (count, batch_size); advances them."""
    positions = (self._cursor[None, :] + np.arange(count)[:, None]) % self._text_size
    self._cursor = (self._cursor + count) % self._text_size
    return self._ids[positions].astype(np.int32)

  def next_ids(self, count=None):
    """Ids (count + 1, batch_size): the last row of the previous call, then `count` new.

    `count` defaults to `num_unrollings`; `next_ids(k)` moves the cursors as k calls of a
    one-unrolling generator would (the course's validation generator).
    """
    new = self._take(self._num_unrollings if count is None else count)
    batches = np.concatenate([self._last_ids[None, :], new], axis=0)
    self._last_ids = batches[-1]
    return batches

  def next(self):
    """The course's `next()`: a list of num_unrollings + 1 one-hot (batch_size, 27) arrays."""
    return list(one_hot(self.next_ids()))

  def get_state(self):
    """The cursors and the carried-over row, for checkpoints: two int64 arrays."""
    return self._cursor.copy(), self._last_ids.astype(np.int64)

  def set_state(self, cursor, last_ids):
    self._cursor = np.asarray(cursor, dtype=np.int64).copy()
    self._last_ids = np.asarray(last_ids, dtype=np.int32).copy()


def bigram_ids(ids, stride=2, size=vocabulary_size):
  """Character ids (n,) -> bigram ids `27 * first + second` (m,) int32.

  size: the characters' vocabulary size (27; `Vocabulary.size` for another vocabulary).

  stride 2: pairs that do not overlap (characters 0-1, 2-3, ...), so a model predicting the
  next pair predicts every character once; stride 1: overlapping pairs (0-1, 1-2, ...).
  """
  starts = np.arange(0, len(ids) - 1, stride)
  return ids[starts].astype(np.int32) * size + ids[starts + 1]


def bigram_text(ids, stride=2):
  """The characters of a sequence of bigram ids cut with `stride`."""
  pairs = [id2char(int(i) // vocabulary_size) + id2char(int(i) % vocabulary_size)
           for i in np.ravel(ids)]
  if stride == 1:
    return pairs[0][:1] + ''.join(pair[1] for pair in pairs) if pairs else ''
  return ''.join(pairs)


class BigramBatchGenerator(BatchGenerator):
  """The course's generator over bigrams (Problem 2b): `next()` gives bigram ids
  (num_unrollings + 1, batch_size), the last row of one call first in the next.
  text: a text, or character ids of a vocabulary of `size` characters."""

  def __init__(self, text, batch_size, num_unrollings, stride=2, size=vocabulary_size):
    ids = text if isinstance(text, np.ndarray) else text_to_ids(text)[0]
    super().__init__(bigram_ids(ids, stride, size), batch_size, num_unrollings)

  def next(self):
    return self.next_ids()


def characters(probabilities):
  """Turn a 1-hot encoding or a probability distribution over the possible characters back
  into its (most likely) character representation (the course's)."""
  return [id2char(c) for c in np.argmax(probabilities, 1)]


def batches2string(batches):
  """Convert a sequence of batches back into their (most likely) string representation."""
  s = [''] * batches[0].shape[0]
  for b in batches:
    s = [''.join(x) for x in zip(s, characters(b))]
  return s


def logprob(predictions, labels):
  """Log-probability (nats) of the true labels in a predicted batch, per row (the course's).

  The course clamps `predictions` below 1e-10 in place; this returns the same number and
  leaves the caller's array alone. The course's labels were float64 (`np.float`); the sum
  is taken in float64 here too, whatever the labels' type.
  """
  predictions = np.maximum(predictions, 1e-10)
  labels = np.asarray(labels, dtype=np.float64)
  return np.sum(np.multiply(labels, -np.log(predictions))) / labels.shape[0]


def sample_distribution(distribution):
  """Sample one element from a distribution assumed to be an array of normalized
  probabilities (the course's: one `random.uniform` and a cumulative walk)."""
  r = random.uniform(0, 1)
  s = 0
  for i in range(len(distribution)):
    s += distribution[i]
    if s >= r:
      return i
  return len(distribution) - 1


def sample(prediction):
  """Turn a (column) prediction into 1-hot encoded samples: (1, V) -> (1, V)."""
  p = np.zeros(shape=[1, prediction.shape[1]], dtype=np.float32)
  p[0, sample_distribution(prediction[0])] = 1.0
  return p


def random_distribution(size=vocabulary_size):
  """Generate a random column of probabilities, (1, size)."""
  b = np.random.uniform(0.0, 1.0, size=[1, size])
  return b / np.sum(b, 1)[:, None]
