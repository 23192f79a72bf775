#!/usr/bin/env bash
# Built-in multilingual recipe: synthesise an offline hi/mr/ta/te corpus, train a CTC
# model (stock conformer, BLR-MoE, SMEAR-MoE ... by --train_config), decode, score.
#
#   ./run.sh                          # everything, default config (aim: <= 30 min on 2 CPU cores)
#   ./run.sh --mini true              # tiny corpus + model: every stage in a few minutes (CI)
#   ./run.sh --stage 8 --stop_stage 9 --allowed_langs hi,mr   # decode with a language prior
#
# Stages (each logs to exp/.../*.log and skips work already done):
#   1 data synthesis   2 format   3 filter   4 tokenizer + lang_list   5 collect stats
#   (4 also trains one word n-gram LM per language + a pooled one: --lm_order, --lm_text_dir)
#   6 train   7 router augmentation   8 decode   9 score   10 routing analysis   11 pack
#   12 ONNX, sherpa-onnx  13 upload
set -euo pipefail
cd "$(dirname "$0")"
run_command="./run.sh $*"   # before option parsing consumes "$@"; stage 9 records it

stage=1
stop_stage=100
mini=false
ngpu=0               # GPUs per node for training (> 1: ESPnet's DDP, one process per GPU)
num_nodes=1          # > 1: multi-node DDP through espnet2.bin.launch and cuda_cmd (cmd.sh; docs/scale_out.md)
gpu_inference=false   # true: stage 8 decodes on the GPU (--ngpu 1 per decoding job), as ESPnet's asr.sh
nj=2                  # parallel jobs for synthesis, format, stats and decoding (1 thread each)
seed=1                # training seed (model init, batch order, dropout)
corpus_seed=1         # corpus synthesis seed: the same data for every training seed
corpus_config=conf/corpus.yaml
train_config=train_dense_conformer.yaml   # looked up here, then in the repo's conf/
inference_config=conf/decode_ctc_greedy.yaml   # decode_ctc_beam_lm_{routed,mixed,oracle,pooled}.yaml: + n-gram LMs
lm_order=3            # stage 4's word n-gram LMs (KenLM), one per language + one pooled
lm_text_dir=          # <lang>.txt files (one sentence a line) replacing that language's training transcripts as LM text
lm_tag=               # LM dir $expdir/ngram_<lm_tag>; default <lm_order>gram[_<basename of lm_text_dir>]
tag=                  # experiment name; default: train config name (+ _seed<N> unless seed 1)
token_type=char       # char | bpe | unigram (sentencepiece, --nbpe pieces)
nbpe=300
train_set=train
valid_set=dev
test_sets=            # default: every data/test_* the corpus has
adapt_set=adapt_ood   # audio + utt2lang only, for router augmentation (stage 7)
router_adapt_config=conf/router_adapt.yaml
allowed_langs=        # language prior at decoding: hi,mr | oracle (each utterance's own) | oracle_wrong
prior_mode=hard       # hard (expert pruning) | soft
inference_model=valid.loss.ave.pth   # checkpoint to decode (ESPnet's average of the n best epochs)
decode_router_adapt=false  # true: stages 8-10 use stage 7's router-augmented ${asr_exp}_router_adapt (own decode dirs, RESULTS.md section)
base_exp=             # frozen-encoder mode (frontend: frozen_encoder): the trained base model's exp dir
audio_format=wav      # stage 2: wav | flac (converted / cut audio in $dumpdir; flac ~half the disk)
speed_perturb_factors=  # stage 2: e.g. "0.9 1.0 1.1": train on <train_set>_sp (as ESPnet asr.sh; off: empty)
narrowband_train=false  # stage 2: true adds a telephone-band copy (nb- ids) of the training set (8 kHz test sets)
lang_temperature=       # stage 3: e.g. 2: temperature-based language upsampling of the training set (off: empty)
rir_scp=                # stage 6: RIR list for ESPnet's preprocessor (rir_apply_prob in the yaml)
noise_scp=              # stage 6: noise list (e.g. MUSAN) for ESPnet's preprocessor (noise_apply_prob, noise_db_range in the yaml)
min_dur=0.3
max_dur=20
datadir=data
dumpdir=dump
expdir=exp
hf_repo= # stage 13 uploads to this hub repo
results_md=           # stage 9 replaces its section here; default $expdir/RESULTS.md (the shipped RESULTS.md only when named)
indic_norm=false      # true: stage 9 also scores with IndicNLP normalisation (scores_indicnlp.json; comparable with Vistaar)
_options="num_nodes lm_order lm_text_dir lm_tag base_exp results_md indic_norm stage stop_stage mini ngpu gpu_inference nj seed corpus_seed corpus_config train_config inference_config tag token_type nbpe train_set valid_set test_sets adapt_set router_adapt_config allowed_langs prior_mode inference_model decode_router_adapt audio_format speed_perturb_factors narrowband_train lang_temperature rir_scp noise_scp min_dur max_dur datadir dumpdir expdir hf_repo"
prev=
for a in "$@"; do  # --mini true swaps the defaults below; explicit options still win
  case "$prev $a" in "--mini "*) mini=$a ;; *" --mini="*) mini=${a#--mini=} ;; esac; prev=$a
done
if [ "$mini" = true ]; then
  corpus_config=conf/corpus_mini.yaml; train_config=train_mini.yaml; token_type=char
  tag=mini; datadir=data_mini; dumpdir=dump_mini; expdir=exp_mini
fi
. ./path.sh
. ./cmd.sh
. local/parse_options.sh

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh stage ${_stage:-}) $*"; }
run_stage() { _stage=$1; [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
resolve_conf() {  # a config path relative to here, else to the repo's conf/
  for c in "$1" "$TOP/conf/$1" "$TOP/conf/$(basename "$1")"; do [ -f "$c" ] && { echo "$c"; return; }; done
  echo "config not found: $1 (looked here and in $TOP/conf)" >&2; exit 1
}
train_config=$(resolve_conf "$train_config")
[ -n "$results_md" ] || results_md=$expdir/RESULTS.md  # never the shipped file unless asked for
# Default exp name: the config's, plus _seed<N> for a training seed other than 1, so that
# `--seed 2` after a seed-1 run trains a new model instead of rescoring the old one.
tag=${tag:-$(basename "$train_config" .yaml | sed 's/^train_//')$([ "$seed" = 1 ] || echo "_seed$seed")}
asr_exp=$expdir/asr_$tag
if [ "$token_type" = char ]; then token_dir=$datadir/token_list/char; else token_dir=$datadir/token_list/${token_type}${nbpe}; fi
token_list=$token_dir/tokens.txt
bpemodel=none; [ "$token_type" = char ] || bpemodel=$token_dir/bpe.model
espnet_token_type=$token_type; [ "$token_type" = unigram ] && espnet_token_type=bpe
stats_dir=$expdir/asr_stats_$(basename "$token_dir")
lang_list=$datadir/lang_list
has_router() { grep -Eq '^encoder: *blr_moe|^preencoder: *smear_moe' "$1"; }  # language router or projector gate
has_language_router() { grep -Eq '^encoder: *blr_moe' "$1"; }  # what router augmentation trains
lm_tag=${lm_tag:-${lm_order}gram${lm_text_dir:+_$(basename "$lm_text_dir")}}
lm_dir=$expdir/ngram_$lm_tag

if run_stage 1; then
  log "synthesising the corpus ($corpus_config) into $datadir"
  python local/synth_indic.py --config "$corpus_config" --datadir "$datadir" --wavdir "$datadir/wav" --nj "$nj" --seed "$corpus_seed"
fi
[ -n "$test_sets" ] || test_sets=$(cd "$datadir" 2>/dev/null && ls -d test_* 2>/dev/null | tr '\n' ' ' || true)
# Test sets (and the adaptation set) are never filtered. A training or validation set that
# is also one of them (e.g. --valid_set dev --test_sets dev) is filtered into its own
# <set>_filtered dir, so that its test copy in $dumpdir/raw/<set> stays whole.
train_copy() {
  case " $test_sets $adapt_set " in *" $1 "*) echo "$dumpdir/raw/${1}_filtered" ;; *) echo "$dumpdir/raw/$1" ;; esac
}
train_src=$train_set  # real-data augmentation: stage 2 derives <train_set>_sp / _nb from it, stage 3 balances
if [ -n "$speed_perturb_factors" ]; then train_set=${train_set}_sp; fi
if [ "$narrowband_train" = true ]; then train_set=${train_set}_nb; fi
train_dir=$(train_copy "$train_set"); valid_dir=$(train_copy "$valid_set")
if [ -n "$lang_temperature" ]; then train_bal_src=$train_dir; train_dir=${train_dir}_bal_T${lang_temperature}; fi
if [ "$train_src" != "$train_set" ] || [ -n "$lang_temperature" ]; then stats_dir=${stats_dir}_$(basename "$train_dir"); fi

if run_stage 2; then
  s_from=$train_src  # augmented training copies: data dirs of sox pipes, decoded once by the format below
  if [ -n "$speed_perturb_factors" ]; then
    python local/augment_data_dir.py speed --src "$datadir/$s_from" --dst "$datadir/${s_from}_sp" --factors $speed_perturb_factors
    s_from=${s_from}_sp
  fi
  if [ "$narrowband_train" = true ]; then
    python local/augment_data_dir.py narrowband --src "$datadir/$s_from" --dst "$datadir/${s_from}_nb"
  fi
  for s in $train_set $valid_set $test_sets $adapt_set; do
    [ -d "$datadir/$s" ] || { log "no $datadir/$s, skipping"; continue; }
    python local/format_data_dir.py --src "$datadir/$s" --dst "$dumpdir/raw/org/$s" --nj "$nj" --audio_format "$audio_format"
  done
fi

if run_stage 3; then
  for s in $train_set $valid_set; do
    log "filtering $s: ${min_dur}s <= duration <= ${max_dur}s, non-empty text -> $(train_copy "$s")"
    python local/filter_data_dir.py --src "$dumpdir/raw/org/$s" --dst "$(train_copy "$s")" --min_dur "$min_dur" --max_dur "$max_dur"
  done
  for s in $test_sets $adapt_set; do  # never filter test data: every utterance is scored
    [ -d "$dumpdir/raw/org/$s" ] || continue
    python local/filter_data_dir.py --src "$dumpdir/raw/org/$s" --dst "$dumpdir/raw/$s" --no_filter
  done
  if [ -n "$lang_temperature" ]; then
    python local/augment_data_dir.py balance --src "$train_bal_src" --dst "$train_dir" --temperature "$lang_temperature" --seed "$seed"
  fi
fi

if run_stage 4; then
  if [ -s "$token_list" ] && [ -s "$lang_list" ]; then log "token list $token_list exists, skipping"; else
    mkdir -p "$token_dir"
    if [ "$token_type" != char ]; then
      log "training sentencepiece $token_type ($nbpe) on $train_dir/text"
      python local/spm_train.py --text "$train_dir/text" --model_type "$token_type" --vocab_size "$nbpe" --out_prefix "$token_dir/bpe"
    fi
    log "writing $token_list"
    python -m espnet_plugins.bin.espnet espnet2.bin.tokenize_text --token_type "$espnet_token_type" --bpemodel "$bpemodel" \
      --input "$train_dir/text" --output "$token_list" --field 2- --cleaner none --g2p none \
      --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
    cut -d' ' -f2- "$train_dir/utt2lang" | tr ' ' '\n' | sort -u | grep -v '^$' > "$lang_list"
    log "languages: $(tr '\n' ' ' < "$lang_list")"
  fi
  if [ -s "$lm_dir/lms.yaml" ]; then log "n-gram LMs exist in $lm_dir, skipping"; else
    lm_opts=(); [ -z "$lm_text_dir" ] || for f in "$lm_text_dir"/*.txt; do lm_opts+=(--lang_text "$(basename "$f" .txt)=$f"); done
    for s in $test_sets; do [ -f "$dumpdir/raw/$s/text" ] && lm_opts+=(--report_oov "$s=$dumpdir/raw/$s"); done
    log "training word ${lm_order}-gram LMs per language (KenLM) on $train_dir/text${lm_text_dir:+ and $lm_text_dir/*.txt} -> $lm_dir"
    mkdir -p "$lm_dir"
    python local/train_ngram.py --text "$train_dir/text" --utt2lang "$train_dir/utt2lang" --order "$lm_order" \
      --out_dir "$lm_dir" "${lm_opts[@]}" > "$lm_dir/train.log" 2>&1 || { log "LM training failed: $(tail -n 3 "$lm_dir/train.log")"; exit 1; }
  fi
fi

# Options shared by collect-stats, training and router augmentation.
common_opts=(--use_preprocessor true --token_type "$espnet_token_type" --token_list "$token_list"
  --bpemodel "$bpemodel" --lang_list "$lang_list" --non_linguistic_symbols none --cleaner none --g2p none
  --seed "$seed")
if [ -n "$base_exp" ]; then  # the frozen base model is the frontend; it computes features itself
  common_opts+=(--frontend_conf asr_train_config="$base_exp/config.yaml" --frontend_conf asr_model_file="$base_exp/$inference_model")
  stats_dir=${stats_dir}_$(basename "$base_exp")
else
  common_opts+=(--frontend_conf fs=16k)
fi
data_opts() {  # data_opts train|valid <dir> [with_text=true]
  echo --$1_data_path_and_name_and_type "$2/wav.scp,speech,sound"
  [ "${3:-true}" = true ] && echo --$1_data_path_and_name_and_type "$2/text,text,text"
  echo --$1_data_path_and_name_and_type "$2/utt2lang,lang,text"
}

if run_stage 5; then
  if [ -s "$stats_dir/train/feats_stats.npz" ]; then log "stats exist in $stats_dir, skipping"; else
    log "collecting shapes and feature statistics into $stats_dir ($nj jobs)"
    mkdir -p "$stats_dir/logdir"
    for s in train valid; do
      d=$train_dir; [ $s = valid ] && d=$valid_dir
      python local/split_keys.py --scp "$d/wav.scp" --nj "$nj" --out "$stats_dir/logdir/$s.JOB.scp"
    done
    # shellcheck disable=SC2046
    OMP_NUM_THREADS=1 $train_cmd JOB=1:"$nj" "$stats_dir/logdir/stats.JOB.log" python -m espnet_plugins.bin.asr_train \
      --collect_stats true --ngpu 0 --config "$train_config" "${common_opts[@]}" --normalize none \
      $(data_opts train "$train_dir") $(data_opts valid "$valid_dir") \
      --train_shape_file "$stats_dir/logdir/train.JOB.scp" --valid_shape_file "$stats_dir/logdir/valid.JOB.scp" \
      --output_dir "$stats_dir/logdir/stats.JOB"
    python -m espnet_plugins.bin.espnet espnet2.bin.aggregate_stats_dirs $(for j in $(seq "$nj"); do echo --input_dir "$stats_dir/logdir/stats.$j"; done) --output_dir "$stats_dir"
  fi
fi

if run_stage 6; then
  if [ -e "$asr_exp/$inference_model" ]; then log "$asr_exp/$inference_model exists, skipping training"; else
    log "training $asr_exp with $train_config (ngpu=$ngpu; log: $asr_exp/train.log; rerun resumes)"
    dist_opts=(); [ "$ngpu" -gt 1 ] && dist_opts=(--multiprocessing_distributed true)
    aug_opts=(); [ -z "$rir_scp" ] || aug_opts+=(--rir_scp "$rir_scp"); [ -z "$noise_scp" ] || aug_opts+=(--noise_scp "$noise_scp")
    mkdir -p "$asr_exp"; cp "$train_config" "$asr_exp/train_config.yaml"
    # CPU training: train_cmd; GPU: cuda_cmd --gpu N (cmd.sh); several nodes: ESPnet's launcher,
    # which submits one task per node through cuda_cmd and adds --ngpu / --dist_* itself.
    launch=($train_cmd); [ "$ngpu" -gt 0 ] && launch=($cuda_cmd --gpu "$ngpu" --num_threads "$ngpu")
    ngpu_opts=(--ngpu "$ngpu" "${dist_opts[@]}")
    if [ "$num_nodes" -gt 1 ]; then
      launch=(python -m espnet_plugins.bin.espnet espnet2.bin.launch --cmd "$cuda_cmd" --log "$asr_exp/train.log"
              --ngpu "$ngpu" --num_nodes "$num_nodes" --init_file_prefix "$asr_exp/.dist_init_" --)
      ngpu_opts=()
    else
      launch+=("$asr_exp/train.log")
    fi
    # shellcheck disable=SC2046
    "${launch[@]}" python -m espnet_plugins.bin.asr_train --config "$train_config" \
      "${common_opts[@]}" "${ngpu_opts[@]}" "${aug_opts[@]}" --resume true --output_dir "$asr_exp" \
      --normalize_conf stats_file="$stats_dir/train/feats_stats.npz" \
      $(data_opts train "$train_dir") $(data_opts valid "$valid_dir") \
      --train_shape_file "$stats_dir/train/speech_shape" --train_shape_file "$stats_dir/train/text_shape" \
      --valid_shape_file "$stats_dir/valid/speech_shape" --valid_shape_file "$stats_dir/valid/text_shape" \
      --fold_length 80000 --fold_length 150
  fi
  # the trainer's plateau warning, if the last epoch's validation gave one
  if [ -f "$asr_exp/train.log" ]; then
    prev_epoch=$(grep -n "epoch results" "$asr_exp/train.log" | tail -2 | head -1 | cut -d: -f1 || true)
    warn=$(grep -n "CTC is still on its blank plateau" "$asr_exp/train.log" | tail -1 || true)
    if [ -n "$warn" ] && [ "${warn%%:*}" -gt "${prev_epoch:-0}" ]; then log "WARNING: ${warn#*WARNING: }"; fi
  fi
fi

if run_stage 7; then
  if ! has_language_router "$train_config"; then log "model has no language router: no router augmentation";
  elif [ ! -d "$dumpdir/raw/$adapt_set" ]; then log "no $dumpdir/raw/$adapt_set: no router augmentation";
  elif [ -e "${asr_exp}_router_adapt/$inference_model" ]; then log "${asr_exp}_router_adapt exists, skipping";
  else
    log "router augmentation on $adapt_set (audio + language only; ASR weights frozen) -> ${asr_exp}_router_adapt"
    mkdir -p "${asr_exp}_router_adapt"
    python local/merge_yaml.py "$train_config" "$(resolve_conf "$router_adapt_config")" > "${asr_exp}_router_adapt/train_config.yaml"
    # shellcheck disable=SC2046
    $train_cmd "${asr_exp}_router_adapt/train.log" python -m espnet_plugins.bin.asr_train \
      --config "${asr_exp}_router_adapt/train_config.yaml" --train_router_only true \
      --normalize_conf stats_file="$stats_dir/train/feats_stats.npz" \
      "${common_opts[@]}" --ngpu "$ngpu" --resume true --output_dir "${asr_exp}_router_adapt" \
      --init_param "$asr_exp/$inference_model" \
      $(data_opts train "$dumpdir/raw/$adapt_set" false) $(data_opts valid "$valid_dir" false) \
      --train_shape_file "$dumpdir/raw/$adapt_set/utt2num_samples" --valid_shape_file "$valid_dir/utt2num_samples"
  fi
fi

# The model stages 8-10 decode, score and analyse: the trained one, or (--decode_router_adapt
# true) its router augmentation from stage 7, with its own decode dirs under
# ${asr_exp}_router_adapt and its own RESULTS.md section (tag <tag>_router_adapt).
case $decode_router_adapt in
  false) decode_exp=$asr_exp; decode_name=$tag ;;
  true) decode_exp=${asr_exp}_router_adapt; decode_name=${tag}_router_adapt ;;
  *) echo "--decode_router_adapt must be true or false, got '$decode_router_adapt'" >&2; exit 1 ;;
esac
inference_tag=$(basename "$inference_config" .yaml); inference_tag=${inference_tag#decode_}
lm_mode=$(sed -n 's/^lm_mode: *\([A-Za-z_]*\).*/\1/p' "$inference_config" | tail -n 1)  # n-gram LMs of stage 4
[ -z "$lm_mode" ] || [ "$lm_mode" = none ] || [ "$lm_tag" = 3gram ] || inference_tag=${inference_tag}_$lm_tag
# another checkpoint than the default gets its own decode dir and RESULTS.md section
[ "$inference_model" = valid.loss.ave.pth ] || inference_tag=${inference_tag}_$(basename "$inference_model" .pth)
[ -n "$allowed_langs" ] && inference_tag=${inference_tag}_prior_${prior_mode}_${allowed_langs//,/}
prior_opts=(); [ -n "$allowed_langs" ] && prior_opts=(--allowed_langs "$allowed_langs" --prior_mode "$prior_mode")
# allowed_langs=oracle / oracle_wrong: each utterance's own (or a wrong) language as its prior
# (stage 8 passes each set's utt2lang in its sets file and decodes one utterance at a time)

if run_stage 8; then
  if [ ! -e "$decode_exp/$inference_model" ]; then
    need="stage 6 (training)"; [ "$decode_router_adapt" = false ] || need="stage 7 (router augmentation: a model with a router and an --adapt_set)"
    log "no $decode_exp/$inference_model to decode; run $need first" >&2
    exit 1
  fi
  case $gpu_inference in
    false) inference_ngpu=0; inference_cmd=$decode_cmd ;; true) inference_ngpu=1; inference_cmd="$cuda_cmd --gpu 1" ;;
    *) echo "--gpu_inference must be true or false, got '$gpu_inference'" >&2; exit 1 ;;
  esac
  # One decoding process per job for every test set (one model load each): job j decodes
  # its share of each set's keys, listed in its sets file.
  decode_dir=$decode_exp/decode_${inference_tag}
  todo=()
  for s in $test_sets; do
    if [ -s "$decode_dir/$s/text" ]; then log "$decode_dir/$s/text exists, skipping"; else todo+=("$s"); fi
  done
  if [ ${#todo[@]} -gt 0 ]; then
    mkdir -p "$decode_dir/logdir"; rm -f "$decode_dir"/logdir/sets.*.txt
    for s in "${todo[@]}"; do
      out=$decode_dir/$s; mkdir -p "$out/logdir"
      python local/split_keys.py --scp "$dumpdir/raw/$s/wav.scp" --nj "$nj" --out "$out/logdir/keys.JOB.scp"
      prior=; case "$allowed_langs" in oracle*) prior=$dumpdir/raw/$s/utt2lang ;; esac
      [ "$lm_mode" = oracle ] && prior=$dumpdir/raw/$s/utt2lang  # each utterance's own language's LM
      for j in $(seq "$nj"); do
        echo "$dumpdir/raw/$s/wav.scp $out/logdir/keys.$j.scp $out/logdir/output.$j $prior" >> "$decode_dir/logdir/sets.$j.txt"
      done
    done
    oracle_opts=(); case "$allowed_langs" in oracle*) oracle_opts=(--batch_size 1) ;; esac
    if [ -n "$lm_mode" ] && [ "$lm_mode" != none ]; then
      [ -s "$lm_dir/lms.yaml" ] || { log "$inference_config decodes with n-gram LMs and $lm_dir has none: run stage 4 first (--stage 4 --stop_stage 4)" >&2; exit 1; }
      oracle_opts+=(--ngram_dir "$lm_dir")
    fi
    log "decoding ${todo[*]} -> $decode_dir ($nj jobs)"
    OMP_NUM_THREADS=1 $inference_cmd JOB=1:"$nj" "$decode_dir/logdir/decode.JOB.log" python -m espnet_plugins.bin.asr_inference \
      --config "$inference_config" --ngpu "$inference_ngpu" "${prior_opts[@]}" "${oracle_opts[@]}" \
      --asr_train_config "$decode_exp/config.yaml" --asr_model_file "$decode_exp/$inference_model" \
      --sets_file "$decode_dir/logdir/sets.JOB.txt"
    for s in "${todo[@]}"; do
      python local/merge_decode_dirs.py --out "$decode_dir/$s" "$decode_dir/$s"/logdir/output.*
    done
  fi
fi

if run_stage 9; then
  log "scoring ($decode_exp, $inference_tag) -> $results_md"
  tests=(); for s in $test_sets; do
    tests+=(--test "$s=$dumpdir/raw/$s:$decode_exp/decode_${inference_tag}/$s")
    # the data dir it came from: a scored set with fewer utterances is reported
    if [ -f "$datadir/$s/wav.scp" ]; then tests+=(--data_dir "$s=$datadir/$s"); fi
  done
  python local/score.py "${tests[@]}" --out_json "$decode_exp/decode_${inference_tag}/scores.json" \
    --results_md "$results_md" --tag "${decode_name} / ${inference_tag}" --config "$train_config" --seed "$seed" \
    --model_file "$decode_exp/$inference_model" --command "$run_command"
  if [ "$indic_norm" = true ]; then
    python local/score.py "${tests[@]}" --indic_norm --out_json "$decode_exp/decode_${inference_tag}/scores_indicnlp.json" \
      --results_md "$results_md" --tag "${decode_name} / ${inference_tag} / indicnlp" --config "$train_config" --seed "$seed" \
      --model_file "$decode_exp/$inference_model" --command "$run_command"
  fi
fi

if run_stage 10; then
  if ! has_router "$train_config"; then log "model has no language router: no routing analysis"; else
    log "routing analysis -> $decode_exp/decode_${inference_tag}/routing"
    python local/routing_analysis.py --decode_dir "$decode_exp/decode_${inference_tag}" --data_root "$dumpdir/raw" \
      --test_sets $test_sets --lang_list "$lang_list" --out "$decode_exp/decode_${inference_tag}/routing"
    # Routing over training: gate entropy (SMEAR / top-k collapse), LID accuracy, CER per epoch.
    python local/training_curves.py --log "$tag=$asr_exp/train.log" --key gate_entropy --key lid_acc \
      --key loss_lid --key cer_ctc --out "$decode_exp/decode_${inference_tag}/routing/training_curves" > /dev/null
  fi
fi

if run_stage 11; then
  if [ -s "$asr_exp/packed.zip" ]; then log "$asr_exp/packed.zip exists, skipping"; else
    # every file config.yaml names (stats, token list, BPE model ...) goes in, under the zip's own names
    log "packing $asr_exp/packed.zip (load: Speech2Text.from_pretrained or asr_inference --model_tag)"
    opts=(); [ -f "$results_md" ] && opts+=(--option "$results_md")
    python -m espnet_plugins.bin.pack --asr_train_config "$asr_exp/config.yaml" --asr_model_file "$asr_exp/$inference_model" \
      "${opts[@]}" --outpath "$asr_exp/packed.zip"
  fi
fi
# Stage 12: ONNX (waveform -> CTC log-probs; onnx_decode.py) and sherpa-onnx (its
# OfflineRecognizer.from_omnilingual_asr_ctc; sherpa_decode.py) exports; --allowed_langs
# prunes the other languages' experts from both files.
if run_stage 12; then
  onnx_name=model; [ -n "$allowed_langs" ] && onnx_name=model_prior_${prior_mode}_${allowed_langs//,/}
  onnx=$asr_exp/onnx/$onnx_name.onnx
  sherpa_dir=$asr_exp/sherpa_onnx${onnx_name#model}
  export_model() {  # export_model <output> <log> [options]: one export, its log line or its error
    local out=$1 elog=$2; shift 2
    OMP_NUM_THREADS=1 python -m espnet_plugins.bin.export --asr_train_config "$asr_exp/config.yaml" \
      --asr_model_file "$asr_exp/$inference_model" "${prior_opts[@]}" --output "$out" "$@" > "$elog" 2>&1 \
      || { log "export failed ($elog): $(tail -n 1 "$elog")"; exit 1; }
    log "$(grep 'wrote' "$elog" | tail -n 1 | sed 's/^.*INFO: //')"
  }
  if grep -Eq '^frontend: *frozen_encoder' "$asr_exp/config.yaml"; then
    log "frontend: frozen_encoder models are not exportable yet: no ONNX export"
  elif [[ "$allowed_langs" = oracle* ]]; then
    log "--allowed_langs $allowed_langs is a per-utterance prior: export with a fixed language set, e.g. hi,mr"
  else
    if [ -s "$onnx" ]; then log "$onnx exists, skipping"; else
      log "exporting $asr_exp/$inference_model -> $onnx${allowed_langs:+ (prior $prior_mode: $allowed_langs)}"
      mkdir -p "$asr_exp/onnx"
      export_model "$onnx" "${onnx%.onnx}.log"
    fi
    if [ -s "$sherpa_dir/model.onnx" ]; then log "$sherpa_dir/model.onnx exists, skipping"; else
      log "exporting $asr_exp/$inference_model -> $sherpa_dir (sherpa-onnx)"
      peak=$(python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1])).get('peak_dbfs', -1.0))" "$corpus_config")
      export_model "$sherpa_dir" "$sherpa_dir.log" --format sherpa_onnx --peak_dbfs "$peak"
    fi
  fi
fi
# Stage 13: publish the packed model (+ model card: RESULTS.md section, languages, config,
# command, data licence) with huggingface_hub. The token comes from HF_TOKEN or `hf auth
# login`, never from an option; HF_HUB_OFFLINE=0 lifts activate.sh's offline default.
if run_stage 13; then
  if [ -z "$hf_repo" ]; then log "no --hf_repo: no upload"; else
    [ -s "$asr_exp/packed.zip" ] || { log "no $asr_exp/packed.zip: run stage 11 first" >&2; exit 1; }
    log "uploading $asr_exp/packed.zip to $hf_repo (${HF_ENDPOINT:-https://huggingface.co}; log: $asr_exp/upload.log)"
    extra=(); for d in onnx sherpa_onnx; do [ -s "$asr_exp/$d/model.onnx" ] && extra+=(--extra "$asr_exp/$d"); done
    python -m espnet_plugins.bin.upload --packed "$asr_exp/packed.zip" --repo_id "$hf_repo" \
      --results_md "$results_md" --results_tag "$tag / $inference_tag" --card_template conf/model_card.md \
      --outdir "$asr_exp/hf_upload" "${extra[@]}" > "$asr_exp/upload.log" 2>&1 \
      || { log "upload failed ($asr_exp/upload.log): $(tail -n 1 "$asr_exp/upload.log")"; exit 1; }
    log "$(grep 'uploaded' "$asr_exp/upload.log" | tail -n 1 | sed 's/^.*INFO: //')"
  fi
fi
_stage=; log "done (stages $stage..$stop_stage)"
