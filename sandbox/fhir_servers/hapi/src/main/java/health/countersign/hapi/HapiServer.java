package health.countersign.hapi;

import ca.uhn.fhir.rest.server.RestfulServer;
import java.net.InetSocketAddress;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;

/**
 * Starts the HAPI FHIR JPA server of {@link ServerConfig} in an embedded Jetty on 127.0.0.1.
 *
 * <p>Port: the first argument, else {@code HAPI_PORT}, else 8090; 0 picks a free port. Once the
 * server answers, one line goes to stdout: {@code HAPI FHIR server listening on <base URL>}.
 * SIGTERM (or Ctrl-C) stops Jetty, then closes the Spring context (and the in-memory database).
 */
public final class HapiServer {
	private static final String READY_PREFIX = "HAPI FHIR server listening on ";

	private HapiServer() {}

	public static void main(String[] args) {
		int port = Integer.parseInt(args.length > 0 ? args[0] : System.getenv().getOrDefault("HAPI_PORT", "8090"));
		try {
			serve(port);
		} catch (Exception e) {
			e.printStackTrace();
			System.exit(1); // HAPI's worker threads would otherwise keep a failed start alive
		}
	}

	private static void serve(int port) throws Exception {
		AnnotationConfigApplicationContext spring = new AnnotationConfigApplicationContext(ServerConfig.class);

		ServletHolder fhir = new ServletHolder(spring.getBean(RestfulServer.class));
		fhir.setInitOrder(1); // initialise HAPI's servlet at start-up, not on the first request
		ServletContextHandler context = new ServletContextHandler();
		context.addServlet(fhir, "/fhir/*");

		Server jetty = new Server(new InetSocketAddress("127.0.0.1", port));
		jetty.setHandler(context);
		Runtime.getRuntime().addShutdownHook(new Thread(() -> {
			try {
				jetty.stop();
			} catch (Exception e) {
				e.printStackTrace();
			}
			spring.close();
		}, "shutdown"));
		jetty.start();

		int actualPort = ((ServerConnector) jetty.getConnectors()[0]).getLocalPort();
		System.out.println(READY_PREFIX + "http://127.0.0.1:" + actualPort + "/fhir");
		System.out.flush();
		jetty.join();
	}
}
