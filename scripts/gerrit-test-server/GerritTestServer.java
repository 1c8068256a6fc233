/*
 * Starts a real Gerrit server for Kiln's tests (see scripts/setup-gerrit-test-server.sh):
 *
 *   GerritTestServer init <site>    Gerrit's own `init --batch --dev` (development auth, admin/secret, no plugins)
 *   GerritTestServer daemon <site>  Gerrit's own `daemon --headless` on the site, until stdin closes
 *
 * The daemon exits when its standard input reaches end of file, so a test process that starts it with a pipe on
 * stdin takes the server down with it however it ends (a crash, SIGKILL): the pipe closes with the process.
 */
import com.google.gerrit.pgm.Daemon;
import com.google.gerrit.pgm.Init;
import java.io.IOException;
import java.io.InputStream;

public final class GerritTestServer {
  private GerritTestServer() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 2 || !(args[0].equals("init") || args[0].equals("daemon"))) {
      System.err.println("usage: GerritTestServer init|daemon <site>");
      System.exit(2);
    }
    String site = args[1];
    if (args[0].equals("init")) {
      System.exit(new Init().main(new String[] {"--batch", "--dev", "--no-auto-start", "-d", site}));
    }
    Thread watchdog = new Thread(GerritTestServer::exitAtEndOfStdin, "stdin-watchdog");
    watchdog.setDaemon(true);
    watchdog.start();
    System.exit(new Daemon().main(new String[] {"--headless", "-d", site}));
  }

  /** Reads stdin until it closes, then stops the JVM (halting it if the shutdown hooks hang). */
  private static void exitAtEndOfStdin() {
    InputStream in = System.in;
    byte[] buf = new byte[256];
    try {
      while (in.read(buf) >= 0) {
        // keep reading: only the end of the stream matters
      }
    } catch (IOException e) {
      // a broken pipe ends the server too
    }
    Thread halter = new Thread(() -> {
      try {
        Thread.sleep(10_000);
      } catch (InterruptedException e) {
        // fall through to halt
      }
      Runtime.getRuntime().halt(1);
    }, "halter");
    halter.setDaemon(true);
    halter.start();
    System.exit(0);
  }
}
