"""The box agent: an asyncssh daemon that runs scripts, serves breakpoints and the bench."""
import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh names cryptography's DSA types when it is imported, and cryptography warns about
# each: 5-10 lines on stderr before any `lager-box` command says a word. Box keys and
# clients' keys are never DSA here (authkeys.REFUSED_KEY_TYPES, server.SIGNATURE_ALGS), so that
# warning says nothing to a box's owner. Only it is silenced: that category, raised from
# asyncssh's own crypto modules; any other warning still shows.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                        module=r"asyncssh\.crypto(\.|$)")
