#!/usr/bin/env bash
# Real-corpus recipe: download and import public multilingual Indic corpora (stages 0-1,
# local/data.sh), then train, decode and score any of the toolkit's models on them with the
# shared stages 2.. of egs/indic_synth/asr1/run.sh (same numbers, same options).
#
#   ./run.sh --help                                          # corpora, languages, options
#   ./run.sh --corpora kathbath,fleurs --langs hi,mr,ta,te   # download, import, train, score
#   ./run.sh --stop_stage 1                                  # download + import only
#   ./run.sh --stage 2 --train_config train_blr_moe.yaml --ngpu 1 --nj 16
#
# Stages: 0 download   1 import (data/train, data/dev = union of the corpora's train/dev
#   sets; one data/test_<corpus>[_<split>] per published test split)   2 format   3 filter
#   4 tokenizer + lang_list   5 stats   6 train   7 router augmentation   8 decode
#   9 score   10 routing analysis   11 pack   12 ONNX export
# Nothing is downloaded unless stage 0 runs. Downloads resume and are verified; a hub token
# comes from `hf auth login` or HF_TOKEN, never from a command-line option.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
corpora=kathbath,fleurs
train_corpora=
langs=hi,mr,ta,te
download_dir=downloads
kathbath_url=https://indic-asr-public.objectstore.e2enetworks.net/indic-superb/kathbath
kathbath_tests="test_known test_unknown test_known_noisy test_unknown_noisy"
indicvoices_root=
cv_root=
mucs_root=
max_utts=
indic_norm=false    # true: stage 9 also scores with IndicNLP normalisation (as Vistaar / IndicWhisper)
datadir=data
dumpdir=dump
expdir=exp
nj=4
train_config=
inference_config=
_options="stage stop_stage corpora train_corpora langs download_dir kathbath_url kathbath_tests indicvoices_root cv_root mucs_root max_utts indic_norm datadir dumpdir expdir nj train_config inference_config"

usage() {
  cat <<'EOF'
Usage: ./run.sh [options] [options of egs/indic_synth/asr1/run.sh for stages 2..]

Corpora (--corpora, comma-separated; download: stage 0)
  kathbath     AI4Bharat Kathbath: 12 languages, read speech; train, valid, test_known,
               test_unknown (+ noisy versions); downloaded (tar archives of ESPnet's egs2/kathbath)
  fleurs       google/fleurs (hub): 102 languages (Indic ones here); train, dev, test; downloaded
  indicvoices  ai4bharat/IndicVoices (hub, gated: accept the terms, then `hf auth login` or
               HF_TOKEN): 22 languages; train, valid (= its test set here); or --indicvoices_root
  commonvoice  Mozilla Common Voice (download by hand, licence): --cv_root <release dir>
  mucs         MUCS 2021 subtask 1 (8 kHz; download by hand): --mucs_root <dir>

Languages (--langs, ISO codes)       kathbath fleurs indicvoices commonvoice mucs
  as Assamese                            -      x       x           x        -
  bn Bengali                             x      x       x           x        -
  gu Gujarati                            x      x       x           -        x
  hi Hindi                               x      x       x           x        x
  kn Kannada                             x      x       x           -        -
  ml Malayalam                           x      x       x           x        -
  mr Marathi                             x      x       x           x        x
  ne Nepali                              -      x       x         (ne-NP)    -
  or Odia                                x      x       x           x        x
  pa Punjabi                             x      x       x         (pa-IN)    -
  sa Sanskrit                            x      -       x           -        -
  sd Sindhi                              -      x       x           -        -
  ta Tamil                               x      x       x           x        x
  te Telugu                              x      x       x           x        x
  ur Urdu                                x      x       x           x        -
  (IndicVoices also: brx doi ks kok mai mni sat; Common Voice: --langs are the release's dir names)

Data dirs: data/<corpus>_{train,dev}, data/train + data/dev (union over --train_corpora),
data/test_kathbath_{known,unknown}[_noisy], data/test_fleurs, data/test_indicvoices,
data/test_cv, data/test_mucs. Stages 2.. take every option of egs/indic_synth/asr1/run.sh
(--train_config, --ngpu, --inference_config, --token_type, ...); see its --help.
EOF
}
passthrough=()
args=("$@")
while [ $# -gt 0 ]; do  # our options are parsed below; every other --name value goes to stages 2..
  case $1 in
    --help|-h) usage; . local/parse_options.sh --help ;;
    --*=*) n=${1%%=*}; n=${n#--}; v=${1#*=}; shift ;;
    --*) n=${1#--}; [ $# -ge 2 ] || { echo "option $1 needs a value" >&2; exit 1; }; v=$2; shift 2 ;;
    *) echo "unexpected argument: $1 (options are --name value; see --help)" >&2; exit 1 ;;
  esac
  n=${n//-/_}
  case " $_options " in *" $n "*) printf -v "$n" '%s' "$v" ;; *) passthrough+=("--$n" "$v") ;; esac
done
# Options for stages 2.. must be known there: say so now, not after the downloads.
shared_options=" $(sed -n 's/^_options="\(.*\)"$/\1/p' ../../indic_synth/asr1/run.sh) "
for ((i = 0; i < ${#passthrough[@]}; i += 2)); do
  n=${passthrough[i]#--}
  case $shared_options in *" $n "*) ;; *) echo "unknown option --$n; see --help (and egs/indic_synth/asr1/run.sh --help)" >&2; exit 1 ;; esac
done
. ./path.sh
. ./cmd.sh

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh) $*"; }
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 0 ]; then
  data_stop=$stop_stage; [ "$data_stop" -gt 1 ] && data_stop=1
  local/data.sh --stage "$stage" --stop_stage "$data_stop" --corpora "$corpora" --train_corpora "$train_corpora" \
    --langs "$langs" --download_dir "$download_dir" --datadir "$datadir" --kathbath_url "$kathbath_url" \
    --kathbath_tests "$kathbath_tests" --indicvoices_root "$indicvoices_root" --cv_root "$cv_root" \
    --mucs_root "$mucs_root" --max_utts "$max_utts"
fi

if [ "$stop_stage" -ge 2 ]; then
  # The shared stages run in egs/indic_synth/asr1: give them absolute paths (configs too,
  # when they are files here; bare names resolve in the repo's conf/ there).
  opts=(--stage "$(( stage > 2 ? stage : 2 ))" --stop_stage "$stop_stage" --nj "$nj" --datadir "$(abspath "$datadir")"
        --dumpdir "$(abspath "$dumpdir")" --expdir "$(abspath "$expdir")" --train_set train --valid_set dev
        --adapt_set none)
  [ -n "$train_config" ] && { [ -f "$train_config" ] && train_config=$(abspath "$train_config"); opts+=(--train_config "$train_config"); }
  [ -n "$inference_config" ] && { [ -f "$inference_config" ] && inference_config=$(abspath "$inference_config"); opts+=(--inference_config "$inference_config"); }
  opts+=(--indic_norm "$indic_norm")
  log "stages ${opts[1]}..$stop_stage: egs/indic_synth/asr1/run.sh ${opts[*]} ${passthrough[*]}"
  ../../indic_synth/asr1/run.sh "${opts[@]}" "${passthrough[@]}"
fi
