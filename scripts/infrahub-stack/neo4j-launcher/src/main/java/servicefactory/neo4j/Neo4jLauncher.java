package servicefactory.neo4j;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;

/**
 * Runs an embedded Neo4j Community server that only speaks Bolt, on a loopback address.
 *
 * <pre>
 * java -cp classes:lib/* servicefactory.neo4j.Neo4jLauncher HOME_DIR [key=value ...]
 * </pre>
 *
 * HOME_DIR holds data/ and logs/. Every key=value argument is a raw Neo4j setting that
 * overrides the defaults below (for example server.bolt.listen_address=127.0.0.1:7689).
 * The process stays up until it receives SIGTERM/SIGINT, then shuts the database down cleanly.
 */
public final class Neo4jLauncher {

    private Neo4jLauncher() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Neo4jLauncher HOME_DIR [setting=value ...]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(home);

        Map<String, String> settings = new LinkedHashMap<>();
        settings.put("server.bolt.enabled", "true");
        settings.put("server.bolt.listen_address", "127.0.0.1:7687");
        settings.put("server.bolt.advertised_address", "127.0.0.1:7687");
        settings.put("server.bolt.tls_level", "DISABLED");
        // A local development database: no authentication, any credentials are accepted.
        settings.put("dbms.security.auth_enabled", "false");
        settings.put("server.memory.pagecache.size", "256m");
        settings.put("db.tx_log.rotation.retention_policy", "2 files");
        settings.put("dbms.usage_report.enabled", "false");
        for (int i = 1; i < args.length; i++) {
            String arg = args[i];
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                System.err.println("ignoring argument without '=': " + arg);
                continue;
            }
            settings.put(arg.substring(0, eq).trim(), arg.substring(eq + 1).trim());
        }
        if (!settingsContainAdvertisedOverride(args)) {
            settings.put("server.bolt.advertised_address", settings.get("server.bolt.listen_address"));
        }

        // The embedded builder takes raw settings through a properties file.
        Path conf = home.resolve("neo4j-launcher.conf");
        StringBuilder text = new StringBuilder("# written by neo4j-launcher at every start\n");
        settings.forEach((key, value) -> text.append(key).append('=').append(value).append('\n'));
        Files.writeString(conf, text.toString());

        DatabaseManagementService service = new DatabaseManagementServiceBuilder(home)
                .loadPropertiesFromFile(conf)
                .build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("neo4j-launcher: shutting down");
            try {
                service.shutdown();
            } finally {
                stopped.countDown();
            }
        }, "neo4j-launcher-shutdown"));

        GraphDatabaseService db = service.database("neo4j");
        // Touch the database once so that "ready" really means ready to answer queries.
        try (var tx = db.beginTx()) {
            tx.execute("RETURN 1").close();
            tx.commit();
        }
        System.out.println("neo4j-launcher: ready, bolt on " + settings.get("server.bolt.listen_address")
                + ", home " + home);
        stopped.await();
    }

    private static boolean settingsContainAdvertisedOverride(String[] args) {
        for (int i = 1; i < args.length; i++) {
            if (args[i].startsWith("server.bolt.advertised_address=")) {
                return true;
            }
        }
        return false;
    }
}
