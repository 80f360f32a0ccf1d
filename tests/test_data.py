"""The data helpers against the course's code, character by character (course_tf1)."""
import io
import contextlib
import lzma
import os
import zipfile

import numpy as np
import pytest

from assignment6 import course, course_tf1, data
from conftest import ROOT, made_up_text


@pytest.mark.parametrize('batch_size,num_unrollings', [(64, 10), (5, 3), (1, 1), (7, 1)])
def test_batches_equal_the_course_generator(batch_size, num_unrollings):
  text = made_up_text(400, seed=batch_size)
  ours = data.BatchGenerator(text, batch_size, num_unrollings)
  theirs = course_tf1.BatchGenerator(text, batch_size, num_unrollings)
  for _ in range(40):  # past several wrap-arounds of the cursors
    a, b = ours.next(), theirs.next()
    assert len(a) == num_unrollings + 1
    for x, y in zip(a, b):
      assert x.shape == (batch_size, data.vocabulary_size) and x.dtype == np.float32
      np.testing.assert_array_equal(x, y)
    assert data.batches2string(a) == course_tf1.batches2string(b)


def test_next_ids_of_k_moves_as_k_single_steps():
  text = made_up_text(50)
  single, many = data.BatchGenerator(text, 1, 1), data.BatchGenerator(text, 1, 1)
  steps = [single.next_ids() for _ in range(37)]
  together = many.next_ids(37)
  np.testing.assert_array_equal(together[:-1, 0], [s[0, 0] for s in steps])
  np.testing.assert_array_equal(together[1:, 0], [s[1, 0] for s in steps])
  np.testing.assert_array_equal(single.next_ids(), many.next_ids(1))


def test_characters_and_ids(capsys):
  assert [data.char2id(c) for c in 'az '] == [1, 26, 0]
  assert data.char2id('\u00ef') == 0
  assert 'Unexpected character: \u00ef' in capsys.readouterr().out
  assert [data.id2char(i) for i in (1, 26, 0)] == ['a', 'z', ' ']
  for text in ('hello world', 'caf\u00e9 \u00fcber 3x', 'A-Z!'):
    ids, unexpected = data.text_to_ids(text)
    with contextlib.redirect_stdout(io.StringIO()):
      assert list(ids) == [course_tf1.char2id(c) for c in text]
    assert unexpected == sum(1 for c in text if c != ' ' and not 'a' <= c <= 'z')


def test_logprob_equals_the_course_and_leaves_its_input():
  rng = np.random.default_rng(0)
  predictions = rng.dirichlet(np.ones(27), size=12).astype(np.float32)
  predictions[0, 3] = 1e-12
  labels = data.one_hot(rng.integers(0, 27, size=12))
  labels[0] = data.one_hot(3)
  kept = predictions.copy()
  assert data.logprob(predictions, labels) == course_tf1.logprob(predictions.copy(),
                                                                labels.astype(np.float64))
  np.testing.assert_array_equal(predictions, kept)
  by_hand = -np.mean(np.log(np.maximum(predictions[labels == 1], 1e-10)).astype(np.float64))
  assert data.logprob(predictions, labels) == pytest.approx(by_hand, rel=1e-12)


def test_sampling_helpers_draw_as_the_course():
  distribution = np.full(27, 1 / 27)
  for seed in range(5):
    data.random.seed(seed)
    np.random.seed(seed)
    ours = (data.sample_distribution(distribution), data.random_distribution())
    course_tf1.random.seed(seed)
    np.random.seed(seed)
    theirs = (course_tf1.sample_distribution(distribution), course_tf1.random_distribution())
    assert ours[0] == theirs[0]
    np.testing.assert_array_equal(ours[1], theirs[1])
  assert data.sample(data.one_hot([5])).argmax() == 5


def write_zip(path, members):
  with zipfile.ZipFile(path, 'w') as z:
    for name, payload in members.items():
      z.writestr(name, payload)


def test_read_data_formats(tmp_path):
  write_zip(tmp_path / 'text8.zip', {'text8': ' the cat'})
  (tmp_path / 'plain.txt').write_text(' the cat')
  with lzma.open(tmp_path / 'text.xz', 'wb') as f:
    f.write(b' the cat')
  for name in ('text8.zip', 'plain.txt', 'text.xz'):
    assert data.read_data(str(tmp_path / name)) == ' the cat'


@pytest.mark.parametrize('case,expected', [
    ('missing', 'no such file'),
    ('empty', 'empty'),
    ('no_member', 'holds no file'),
    ('truncated', 'not a valid zip'),
    ('corrupt_xz', 'cannot be read'),
])
def test_read_data_errors_name_the_file(tmp_path, case, expected):
  path = tmp_path / ('bad.xz' if case == 'corrupt_xz' else 'text8.zip')
  if case == 'empty':
    path = tmp_path / 'empty.txt'
    path.write_text('')
  elif case == 'no_member':
    write_zip(path, {})
  elif case == 'truncated':
    write_zip(path, {'text8': 'the cat ' * 1000})
    path.write_bytes(path.read_bytes()[:200])
  elif case == 'corrupt_xz':
    path.write_bytes(b'\xfd7zXZ\x00 not really')
  before = path.read_bytes() if path.exists() else None
  with pytest.raises(data.DataError) as error:
    data.read_data(str(path))
  message = str(error.value)
  assert str(path) in message and expected in message and '\n' not in message
  assert (path.read_bytes() if path.exists() else None) == before


def test_the_embedded_sample():
  text = data.read_data(data.SAMPLE_ZIP)
  assert len(text) == 5_000_000
  import hashlib
  assert hashlib.sha256(text.encode()).hexdigest() == (
      'c3f02c764b4e8a2ade298de008de4b8db6e2385cde53e0d682eea7485cae8879')
  assert data.text_to_ids(text)[1] == 0
  with zipfile.ZipFile(data.SAMPLE_ZIP) as z:
    assert z.namelist() == ['text8']


def test_load_corpus_says_which_and_strict_refuses(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  lines = []
  data.load_corpus(print_fn=lines.append)
  assert 'embedded text8 sample' in lines[0] and 'text8_download.sh' in lines[0]
  write_zip(tmp_path / 'text8.zip', {'text8': ' the cat'})
  lines = []
  assert data.load_corpus(print_fn=lines.append) == ' the cat'
  assert lines == ['Corpus: text8.zip (8 characters).']
  (tmp_path / 'odd.txt').write_text('the caf\u00e9 3')
  lines = []
  data.load_corpus(str(tmp_path / 'odd.txt'), print_fn=lines.append)
  assert 'Unexpected characters: 2' in lines[-1]
  with pytest.raises(data.DataError, match='--strict'):
    data.load_corpus(str(tmp_path / 'odd.txt'), strict=True, print_fn=lines.append)


TEXT8 = os.environ.get('TEXT8_ZIP', os.path.join(ROOT, 'text8.zip'))


@pytest.mark.skipif(not os.path.exists(TEXT8),
                    reason='text8.zip is not here (run text8_download.sh, or set TEXT8_ZIP): '
                           'the course\'s printed figures need the real text8')
def test_the_course_printed_figures_on_text8():
  checks = course.course_outputs()['data_checks']
  text = data.read_data(TEXT8)
  assert len(text) == checks['data_size']
  valid_text, train_text = text[:1000], text[1000:]
  assert '%d %s' % (len(train_text), train_text[:64]) == checks['train_size_and_head']
  assert '%d %s' % (len(valid_text), valid_text[:64]) == checks['valid_size_and_head']
  train_batches = data.BatchGenerator(train_text, 64, 10)
  assert data.batches2string(train_batches.next()) == checks[
      'batches2string(train_batches.next()) first call']
  assert data.batches2string(train_batches.next()) == checks[
      'batches2string(train_batches.next()) second call']
  valid_batches = data.BatchGenerator(valid_text, 1, 1)
  assert [data.batches2string(valid_batches.next()) for _ in range(2)] == checks[
      'batches2string(valid_batches.next()) first two calls']


def test_the_text8_vocabulary_is_char2id_and_the_sorted_alphabet():
  vocabulary = data.Vocabulary()
  assert vocabulary.size == 27 and vocabulary.is_text8
  assert [vocabulary.characters.index(c) for c in 'az '] == [data.char2id(c) for c in 'az ']
  text = 'the quick brown fox jumps over the lazy dog'
  assert data.Vocabulary.from_text(text + 'q').characters == data.TEXT8_CHARACTERS
  ids, unexpected = vocabulary.ids('Caf\u00e9 ok')
  np.testing.assert_array_equal(ids, data.text_to_ids('Caf\u00e9 ok')[0])
  assert unexpected == 2 and vocabulary.text(ids) == ' af  ok'


def test_a_vocabulary_from_any_text():
  vocabulary = data.Vocabulary.from_text('\u03bd\u03b5\u03c1\u03cc\nStra\u00dfe')
  assert vocabulary.characters == ''.join(sorted('\u03bd\u03b5\u03c1\u03cc\nStra\u00dfe'))
  ids, unknown = vocabulary.ids('Stra\u00dfe\n\u03bd\u03b5\u03c1\u03ccX')
  assert unknown == 1 and vocabulary.text(ids[:-1]) == 'Stra\u00dfe\n\u03bd\u03b5\u03c1\u03cc'
  assert ids[-1] == 0 and vocabulary.unknown('XaY') == 'XY'
  pairs = data.bigram_ids(ids[:-1], 2, vocabulary.size)  # 11 characters: 5 pairs
  assert vocabulary.bigram_text(pairs, 2) == 'Stra\u00dfe\n\u03bd\u03b5\u03c1'
  assert vocabulary.bigram_text(data.bigram_ids(ids[:-1], 1, vocabulary.size), 1) == (
      'Stra\u00dfe\n\u03bd\u03b5\u03c1\u03cc')
  with pytest.raises(data.DataError, match='sorted'):
    data.Vocabulary('ba')
  with pytest.raises(data.DataError, match='129 distinct characters, so 16641 bigrams'):
    data.Vocabulary(''.join(chr(c) for c in range(0x400, 0x400 + 129))).check_bigrams()
  data.Vocabulary(''.join(chr(c) for c in range(0x400, 0x400 + 128))).check_bigrams()
