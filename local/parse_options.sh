# Sourced after a script sets its defaults: turns "--name value" / "--name=value" into
# name=value for every variable that already exists (Kaldi convention; dashes in
# option names map to underscores). "--help" prints the variables and their defaults.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) echo "Options (current values):"; for v in ${_options:-}; do printf '  --%s %q\n' "$v" "${!v}"; done; exit 0 ;;
    --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
    --*) _name=$1; [ $# -ge 2 ] || { echo "option $1 needs a value" >&2; exit 1; }; _value=$2; shift 2 ;;
    *) echo "unexpected argument: $1 (options are --name value)" >&2; exit 1 ;;
  esac
  _name=${_name#--}; _name=${_name//-/_}
  if [ -z "${!_name+x}" ]; then echo "unknown option --$_name; see --help" >&2; exit 1; fi
  printf -v "$_name" '%s' "$_value"
done
unset _name _value
